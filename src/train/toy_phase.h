// The toy phase: AdamW on a small parameter vector towards a seeded target,
// with per-rank noisy gradients averaged over DP-replicate. It exercises the
// whole run machinery (deck, mesh, checkpoints, signals, progress) cheaply and
// is what the foundation tests drive.
#pragma once

namespace temper {
class RunContext;
int run_toy_phase(RunContext& ctx);  // returns the process exit status
}  // namespace temper
