// Global gradient-norm clipping: the norm over all gradients (summed over the
// ranks that hold disjoint gradient pieces), and the scale that brings it to
// at most max_norm. The scale is applied inside the optimizer step.
#pragma once
#include <vector>

#include "kernels/kernels.h"
#include "train/adamw.h"

namespace temper {

class Comm;

// Squared norm of the local gradients; when `shard_comm` is given, summed over it.
double grad_norm(Kernels& k, const std::vector<ParamRef>& params, Comm* shard_comm = nullptr);
// Multiplier for the gradients: min(1, max_norm / norm) (1 when max_norm <= 0).
double clip_scale(double norm, double max_norm);

}  // namespace temper
