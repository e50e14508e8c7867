// Phase and subcommand dispatch for main.
#pragma once
#include <string>

namespace temper {
class RunContext;
struct CommandLine;

// "sft" | "rl" | "eval" (the toy phase is dispatched by main directly).
int run_phase(const std::string& phase, RunContext& ctx);
// `temper SUBCOMMAND ...` (e.g. generate-tasks); returns the exit status.
int run_subcommand(const CommandLine& cl, int rank);

}  // namespace temper
