#include "train/grad_clip.h"

#include <cmath>

#include "parallel/comm.h"

namespace temper {

double grad_norm(Kernels& k, const std::vector<ParamRef>& params, Comm* shard_comm) {
  std::vector<const Tensor*> grads;
  grads.reserve(params.size());
  for (const auto& p : params) grads.push_back(&p.grad);
  double ss = k.sum_squares_many(grads);
  if (shard_comm) ss = shard_comm->allreduce_sum(ss);
  return std::sqrt(ss);
}

double clip_scale(double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  return max_norm / (norm + 1e-6);
}

}  // namespace temper
