// phase = eval: a benchmark JSONL (RL prompt format) x eval.samples responses,
// scored by the RL verifiers; per-sample results for postproc/score_eval.py and a
// per-task summary (accuracy = pass@1 averaged over samples, unparsable rate).
#pragma once
#include <cstdint>
#include <string>

#include "rl/rollout.h"
#include "train/model_init.h"

namespace temper {

class PhaseContext;
class Tokenizer;

struct EvalOptions {
  std::string file;         // benchmark JSONL
  int64_t prompts = 0;      // only the first this many; 0 = all
  RolloutOptions rollout;   // group_size = samples per prompt, sampling, max_batch, seed
  ScoringOptions scoring;
  uint64_t seed = 0;        // random initialisation (model.init = random)
};

int run_eval_phase(PhaseContext& ctx, const EvalOptions& o, const Tokenizer& tok, ChatTemplate tmpl,
                   const InitialWeights& init);

}  // namespace temper
