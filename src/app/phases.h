// Phase dispatch for main: builds the phase's typed options from the deck once
// (app/phase_options), resolves the tokenizer and the initial weights, and runs
// the phase (train/sft_phase, rl/rl_phase, rl/eval_phase, train/toy_phase).
#pragma once
#include <string>

namespace temper {

class RunContext;

// "sft" | "rl" | "eval" | "toy"; returns the process exit status.
int run_phase(const std::string& phase, RunContext& ctx);

}  // namespace temper
