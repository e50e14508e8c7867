// The toy phase: AdamW on a small parameter vector towards a seeded target,
// with per-rank noisy gradients averaged over DP-replicate. It exercises the
// whole run machinery (deck, mesh, checkpoints, signals, progress) cheaply and
// is what the foundation tests drive.
#pragma once

#include <cstdint>

namespace temper {
class PhaseContext;

struct ToyOptions {
  int64_t steps = 100, dim = 16;
  double lr = 0.1;
  int sleep_ms = 0;                // pause after each step
  int64_t checkpoint_every = 500;  // 0: at the end (and at a stop) only
  int log_every = 10;
  uint64_t seed = 0;
};

int run_toy_phase(PhaseContext& ctx, const ToyOptions& o);  // returns the process exit status
}  // namespace temper
