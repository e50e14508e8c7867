// Deck -> option structs of the RL machinery (generation, scoring, losses).
#pragma once
#include "deck/deck.h"
#include "rl/policy_loss.h"
#include "rl/rollout.h"
#include "rl/task_rewards.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace temper {

// rl.code_*, rl.if_loose, rl.answer_prefixes
ScoringOptions scoring_options_from_deck(const Deck& d);
// rl.group_size, temperature, top_p, top_k, max_new_tokens, max_batch, stop_strings; seed run.seed
RolloutOptions rollout_options_from_deck(const Deck& d);
// rl.eps_low, eps_high, loss_agg, kl_coef
PolicyLossOptions policy_loss_options_from_deck(const Deck& d);

}  // namespace temper
