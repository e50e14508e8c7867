// The bias corrections of an AdamW step (kernels.h's AdamWParams), shared by every
// backend's adamw_step and adamw_step_many.
#pragma once
#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"

namespace temper {

struct AdamWBiasCorrection {
  double bc1, bc2;
};

// 1 - beta1^step and 1 - beta2^step, after checking that step >= 1 and that both are positive
// (betas in [0, 1)); `op` names the call in the message.
inline AdamWBiasCorrection adamw_bias_correction(const char* op, const AdamWParams& p) {
  TEMPER_CHECK(p.step >= 1, op, ": step must be >= 1 (1-based, for bias correction), got ", p.step);
  const double bc1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double bc2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  TEMPER_CHECK(bc1 > 0.0 && bc2 > 0.0, op, ": beta1 = ", p.beta1, " and beta2 = ", p.beta2,
               " must lie in [0, 1) for bias correction");
  return {bc1, bc2};
}

}  // namespace temper
