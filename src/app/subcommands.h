// `temper SUBCOMMAND ...`: generate-tasks, export, plan, upscale, print-deck, help.
#pragma once

namespace temper {

struct CommandLine;

// Runs cl.subcommand with cl.args; returns the exit status.
int run_subcommand(const CommandLine& cl, int rank);

}  // namespace temper
