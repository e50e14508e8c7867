// The memory plan of a deck (model/memory_plan with the deck's model, mesh,
// micro-batch, checkpointing policy and backend dtypes): printed at the start
// of training and by `temper plan DECK [--section.key=value ...]`, which trains
// nothing and warns when a rank's estimate exceeds parallel.device_memory_gib.
#pragma once
#include <string>
#include <vector>

#include "deck/deck.h"
#include "model/config.h"
#include "model/memory_plan.h"

namespace temper {

struct DeckPlan {
  MemoryPlanOptions options;
  int64_t total_bytes = 0;
  double device_gib = 0;  // parallel.device_memory_gib
  bool fits = true;       // total <= device memory
  std::string text;       // model line, table and verdict
};

// The plan of one rank for running `cfg` as the deck says. sft: micro-batches of
// data.micro_batch x the longest stage seq_len, and the greedy evaluation's 16
// KV-cache slots of data.seq_len when data.eval_file is set. rl: generation of
// rl.max_batch sequences of rl.plan_prompt_tokens + rl.max_new_tokens from the
// whole policy (gathered from the shards under dp_shard), then training on
// micro-batches of max(rl.micro_batch_tokens, that length) tokens; the two
// phases' buffers never coexist. eval: generation only.
// replicate >= 0 overrides parallel.dp_replicate (a running job passes its resolved mesh's).
DeckPlan plan_from_deck(const Deck& deck, const ModelConfig& cfg, int replicate = -1);

// temper plan DECK [--section.key=value ...]: prints the plan (rank 0); exit 0.
int run_plan_command(const std::vector<std::string>& args, int rank);

}  // namespace temper
