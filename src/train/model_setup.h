// Deck → model config and tokenizer, shared by the SFT, RL and eval phases.
#pragma once
#include <memory>
#include <string>

#include "deck/deck.h"
#include "model/config.h"
#include "model/decoder.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace temper {

// model.vocab_size = 0 takes the tokenizer's size; a smaller one than the tokenizer's is an error.
ModelConfig model_config_from_deck(const Deck& deck, int tokenizer_vocab);
std::unique_ptr<Tokenizer> tokenizer_from_deck(const Deck& deck);
// data.chat_template, 'auto' resolved from the tokenizer (ChatML for 'byte').
ChatTemplate chat_template_from_deck(const Deck& deck);
// model.activation_checkpointing and model.recompute.
Checkpointing checkpointing_from_deck(const Deck& deck);
RecomputeParts recompute_parts_from_deck(const Deck& deck);

}  // namespace temper
