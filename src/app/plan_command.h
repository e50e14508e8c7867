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

// The plan of one rank for training `cfg` as the deck says (run.phase picks the
// micro-batch: sft data.micro_batch x the longest stage seq_len; rl
// rl.micro_batch_tokens; eval none) with the KV cache of the phase's generation
// (rl/eval: rl.max_batch slots, sft: the greedy evaluation's 16 when
// data.eval_file is set; data.seq_len positions).
// replicate >= 0 overrides parallel.dp_replicate (a running job passes its resolved mesh's).
DeckPlan plan_from_deck(const Deck& deck, const ModelConfig& cfg, int replicate = -1);

// temper plan DECK [--section.key=value ...]: prints the plan (rank 0); exit 0.
int run_plan_command(const std::vector<std::string>& args, int rank);

}  // namespace temper
