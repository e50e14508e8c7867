// Deck -> RL option structs (see rl_options.h).
#include "rl/rl_options.h"

#include <sstream>

namespace temper {

ScoringOptions scoring_options_from_deck(const Deck& d) {
  ScoringOptions s;
  s.math.answer_prefixes = d.get_list("rl.answer_prefixes");
  std::istringstream cmd(d.get_string("rl.code_command"));
  s.sandbox.run_command.clear();
  for (std::string word; cmd >> word;) s.sandbox.run_command.push_back(word);
  TEMPER_CHECK(!s.sandbox.run_command.empty(), d.source(), ": rl.code_command (", d.where("rl.code_command"),
               ") is empty");
  s.sandbox.workers = int(d.get_int("rl.code_workers"));
  s.sandbox.wall_timeout_s = d.get_float("rl.code_timeout");
  s.sandbox.test_code_batch = int(d.get_int("rl.code_batch"));
  s.sandbox.allow_unisolated = d.get_bool("rl.code_unisolated");
  s.sandbox.ro_paths = d.get_list("rl.code_ro_paths");
  s.if_loose = d.get_bool("rl.if_loose");
  return s;
}

RolloutOptions rollout_options_from_deck(const Deck& d) {
  RolloutOptions o;
  o.group_size = int(d.get_int("rl.group_size"));
  o.max_new_tokens = int(d.get_int("rl.max_new_tokens"));
  o.temperature = float(d.get_float("rl.temperature"));
  o.top_p = float(d.get_float("rl.top_p"));
  o.top_k = int(d.get_int("rl.top_k"));
  o.max_batch = int(d.get_int("rl.max_batch"));
  o.stop_strings = d.get_list("rl.stop_strings");
  o.seed = uint64_t(d.get_int("run.seed"));
  return o;
}

PolicyLossOptions policy_loss_options_from_deck(const Deck& d) {
  PolicyLossOptions o;
  o.eps_low = d.get_float("rl.eps_low");
  o.eps_high = d.get_float("rl.eps_high");
  o.loss_agg = loss_agg_from_name(d.get_string("rl.loss_agg"));
  o.kl_coef = d.get_float("rl.kl_coef");
  return o;
}

}  // namespace temper
