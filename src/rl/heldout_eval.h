// Scoring a model on a prompt set: every rank takes every R-th prompt, samples
// n responses each (greedy when the temperature is 0), scores them with the RL
// verifiers, writes one JSONL line per sample, and the per-task counts are summed
// over the ranks. Used by phase = eval and by the RL phase's held-out checks.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "rl/rollout.h"

namespace temper {

struct TaskScore {
  int64_t prompts = 0, samples = 0, correct = 0, unparsable = 0;
  double reward_sum = 0;
  double accuracy() const { return samples ? double(correct) / double(samples) : 0.0; }
};

struct HeldoutResult {
  std::map<std::string, TaskScore> tasks;  // by task name, identical on every rank
  TaskScore total;
  int64_t generated_tokens = 0;
  double seconds = 0;
  // "arith 12/40 (30.0 %), sort 3/40 (7.5 %)"
  std::string summary() const;
};

// results_path: JSONL written by this rank ("" = none); lines carry task,
// prompt_index, sample, reward, verdict, finish, response_tokens, detail, response,
// and the record's "id" when it has one.
HeldoutResult evaluate_prompts(Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                               const std::vector<RlPrompt>& prompts, const RolloutOptions& opt,
                               const ScoringOptions& scoring, Comm& comm, const std::string& results_path);

}  // namespace temper
