// phase = rl: GRPO/GSPO post-training with verifiable rewards. One step: prompts
// drawn by rl/task_mix from the (difficulty-filtered) pool -> n samples each with
// the KV-cached generation engine -> rewards (math / code sandbox / instruction
// following; unparsable responses discarded) -> group-normalised advantages ->
// zero-variance groups dropped and refilled -> reuse_steps clipped policy updates
// against the stored behaviour log-probs -> metrics, trajectory dumps, checkpoints.
// Data-parallel over dp_replicate: each rank samples its share of the prompts.
#pragma once

namespace temper {

class RunContext;
int run_rl_phase(RunContext& ctx);

}  // namespace temper
