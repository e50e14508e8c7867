// phase = rl: GRPO/GSPO post-training with verifiable rewards. One step: prompts
// drawn by rl/task_mix from the (difficulty-filtered) pool -> n samples each with
// the KV-cached generation engine -> rewards (math / code sandbox / instruction
// following; unparsable responses discarded) -> group-normalised advantages ->
// zero-variance groups dropped and refilled -> reuse_steps clipped policy updates
// against the stored behaviour log-probs -> metrics, trajectory dumps, checkpoints.
// Any mesh sp x dp_shard x dp_replicate: the policy is a train/engine; every rank
// generates its share of the groups from the gathered policy and the sp ranks of
// a data-parallel rank train on their samples together (rl/rollout_distribution).
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "rl/advantages.h"
#include "rl/difficulty_filter.h"
#include "rl/policy_update.h"
#include "rl/rollout.h"
#include "train/engine.h"
#include "train/model_init.h"

namespace temper {

class PhaseContext;
class Tokenizer;

struct RlOptions {
  EngineOptions engine;
  UpdateOptions update;        // algorithm, loss, reuse_steps, micro-batch tokens, behaviour log-probs
  RolloutOptions rollout;      // group size, sampling, max_new_tokens, max_batch, stop strings, seed
  ScoringOptions scoring;
  AdvantageOptions advantages;
  std::string prompts_file;
  int prompts_per_step = 32;
  int64_t steps = 100;
  double lr = 1e-6;            // constant after warmup_steps of linear warm-up
  int64_t warmup_steps = 0;
  // difficulty filter
  bool filter = false;
  int filter_rollouts = 5;
  int64_t filter_prompts = 0;  // 0: the whole prompt set
  PassBand filter_band;
  std::map<std::string, PassBand> filter_bands;  // per task
  // dynamic sampling
  bool drop_zero_variance = true;
  int refill_rounds = 2;
  std::map<std::string, double> task_mix;  // empty: proportional to the pools
  std::string task_mix_where;              // where task_mix was set (for messages)
  // held-out evaluation
  std::string eval_file;
  int64_t eval_every = 0, eval_samples = 0;
  float eval_temperature = 0;
  int64_t dump_every = 0, checkpoint_every = 500;
  int log_every = 10;
  uint64_t seed = 0;
};

int run_rl_phase(PhaseContext& ctx, const RlOptions& o, const Tokenizer& tok, ChatTemplate tmpl,
                 const InitialWeights& init);

}  // namespace temper
