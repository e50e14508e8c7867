// Rollouts: n samples for each of a list of RL prompts, generated with the
// current policy, decoded and scored. Shared by the RL step, the difficulty
// filter's calibration, held-out evaluation and phase = eval.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/decoder.h"
#include "rl/generation.h"
#include "rl/task_rewards.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace temper {

struct RolloutOptions {
  int group_size = 1;
  int max_new_tokens = 256;
  float temperature = 1.0f;  // <= 0: greedy
  float top_p = 1.0f;
  int top_k = 0;
  int max_batch = 256;
  std::vector<std::string> stop_strings;
  uint64_t seed = 0;  // samples draw from streams keyed by (seed, prompt index, sample)
};

struct Rollouts {
  // per prompt of the request (in request order)
  std::vector<int64_t> prompts;                  // indices into the prompt set
  std::vector<std::vector<int32_t>> prompt_ids;  // rendered chat prompt
  // per sample, group by group: sample j belongs to request prompt j / group_size
  int group_size = 1;
  std::vector<std::vector<int32_t>> response_ids;  // end-of-turn token included when emitted
  std::vector<std::vector<double>> sampler_logp;   // per response token
  std::vector<std::string> text;                   // decoded response (specials as text)
  std::vector<std::string> finish;                 // eos | stop_string | length
  std::vector<uint8_t> truncated;                  // finish == length
  std::vector<ScoredResponse> scores;
  // totals
  int64_t generated_tokens = 0;
  int64_t prompt_tokens = 0;
  double generate_seconds = 0, score_seconds = 0;

  size_t samples() const { return response_ids.size(); }
  int64_t prompt_of_sample(size_t j) const { return prompts[j / size_t(group_size)]; }
  std::vector<double> rewards() const;
  std::vector<Verdict> verdicts() const;
};

// Renders each prompt with the chat template (generation prompt), samples
// opt.group_size responses each with `gen` (built on the policy, with the
// tokenizer, so stop strings apply), decodes and scores them. opt.max_batch is
// the Generator's business and ignored here.
Rollouts generate_rollouts(Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                           const std::vector<RlPrompt>& prompt_set, const std::vector<int64_t>& which,
                           const RolloutOptions& opt, const ScoringOptions& scoring);

}  // namespace temper
