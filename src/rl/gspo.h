// GSPO (Group Sequence Policy Optimization): the clipped surrogate on a
// length-normalised SEQUENCE ratio instead of per-token ratios.
//
// For a non-discarded response i with |y| valid tokens and advantage A:
//   s   = exp( (1/|y|) sum_t (cur_t - behaviour_t) )   (sequence ratio; eps apply to s)
//   l_i = -min(s A, clip(s, 1 - eps_low, 1 + eps_high) A)
//       + kl_coef * mean_t k3_t                           (k3 as in grpo.h, off by default)
// aggregated by opt.loss_agg:
//   seq-mean-token-mean:  L = sum_i l_i / D,  D = number of samples  (the GSPO paper)
//   token-mean:           L = sum_i |y_i| l_i / D,  D = total valid tokens (each token
//                         carries its sequence's loss, so long responses weigh more)
// Gradient: ds/dcur_t = s / |y| for every valid token of the response, so
//   dL/dcur_t = w_i * (-A s / |y|)  where the unclipped term is the minimum, else 0
// (plus the KL term's derivative), w_i the aggregation weight.
//
// Clip range: s stays near 1 because it is a geometric mean; the GSPO paper uses
// eps_low = 3e-4, eps_high = 4e-4. The Motif seeds use the expanded range
// [0.28, 0.40] (eps_low 0.28, eps_high 0.40) with no length penalty.
#pragma once
#include <vector>

#include "rl/policy_loss.h"

namespace temper {

PolicyLossResult gspo_loss(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt);

}  // namespace temper
