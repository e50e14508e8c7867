// The SFT phase: packed sequences, assistant-only loss, AdamW/Muon with warmup +
// cosine, gradient accumulation, a curriculum of stages (each its own files,
// seq_len and step count), periodic held-out exact-match evaluation by greedy
// decoding, checkpoints that resume bit for bit (and on another mesh). The mesh
// is the engine's business (train/engine.h): this is a loop over its steps.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/sft_dataset.h"
#include "deck/deck.h"  // SftStage
#include "train/engine.h"
#include "train/greedy_eval.h"
#include "train/model_init.h"

namespace temper {

class PhaseContext;
class Tokenizer;

struct SftOptions {
  EngineOptions engine;
  std::vector<SftStage> stages;  // files, seq_len and steps of each stage
  SftDataOptions data;           // micro_batch, shuffle seed, overlong, chat template (seq_len per stage)
  double lr = 3e-4, min_lr = 3e-5;
  int64_t warmup_steps = 100;
  int64_t grad_accum = 1;
  int64_t checkpoint_every = 500;  // 0: at the end (and at a stop) only
  int64_t eval_every = 0;          // 0: before and after only
  int log_every = 10;
  uint64_t seed = 0;               // random initialisation
  GreedyEvalOptions eval;
  std::string plan;                // the memory plan logged at the start ("" = none)
};

int run_sft_phase(PhaseContext& ctx, const SftOptions& o, const Tokenizer& tok, const InitialWeights& init);

}  // namespace temper
