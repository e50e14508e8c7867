// GRPO / DAPO-style clipped policy loss with a per-token importance ratio.
//
// For every valid token t of a non-discarded response with advantage A:
//   r_t    = exp(cur_t - behaviour_t)                      (token ratio; eps apply to it)
//   l_t    = -min(r_t * A, clip(r_t, 1 - eps_low, 1 + eps_high) * A)
//          + kl_coef * (exp(ref_t - cur_t) - (ref_t - cur_t) - 1)   (k3, off by default)
// aggregated by opt.loss_agg (see policy_loss.h):
//   token-mean:           L = sum_{i,t} l_{i,t} / D,  D = total valid tokens
//   seq-mean-token-mean:  L = sum_i (mean_t l_{i,t}) / D,  D = number of samples
// dlogp is the exact derivative of L wrt cur_t: -A r_t (times the aggregation
// weight) where the unclipped term is the minimum, 0 where the clip is active.
#pragma once
#include <vector>

#include "rl/policy_loss.h"

namespace temper {

PolicyLossResult grpo_loss(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt);

}  // namespace temper
