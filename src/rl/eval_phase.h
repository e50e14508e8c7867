// phase = eval: a benchmark JSONL (RL prompt format) x eval.samples responses,
// scored by the RL verifiers; per-sample results for postproc/score_eval.py and a
// per-task summary (accuracy = pass@1 averaged over samples, unparsable rate).
#pragma once

namespace temper {

class RunContext;
int run_eval_phase(RunContext& ctx);

}  // namespace temper
