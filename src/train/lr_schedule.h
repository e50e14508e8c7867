// Learning-rate schedule: linear warmup from 0 to lr over warmup_steps, then
// cosine decay to min_lr at total_steps (constant min_lr after).
#pragma once
#include <cstdint>

namespace temper {

struct LrSchedule {
  double lr = 1e-3, min_lr = 0.0;
  int64_t warmup_steps = 0, total_steps = 1;
  // Learning rate of 1-based step `step`.
  double at(int64_t step) const;
};

}  // namespace temper
