// AdamW (Loshchilov & Hutter): Adam moments with bias correction and decoupled
// weight decay, applied only to parameters marked `decay` (matrices, not norms
// or biases). Moments are f32 on the backend device; the update runs through
// Kernels::adamw_step_many (all parameters at once; on cuda one multi-tensor
// kernel), which also writes the compute copy of every parameter whose ParamRef
// has one. Global gradient-norm clipping is folded into grad_scale.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/param_ref.h"

namespace temper {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(Kernels& k, std::vector<ParamRef> params, AdamWConfig cfg);
  // One update with learning rate lr; grad_scale multiplies every gradient first.
  void step(double lr, double grad_scale);
  int64_t steps_taken() const { return t_; }
  // True when every parameter's compute copy is current after step() (each ParamRef
  // has `compute`, written by the update): no Decoder::refresh_compute() needed.
  bool refreshes_compute() const { return refreshes_; }

  // Checkpoint support: host copies of the moments as "optim/m/<name>", "optim/v/<name>".
  void save(std::map<std::string, Tensor>& out) const;
  void state(std::map<std::string, Tensor>& out) const;  // the moments themselves (no copies)
  void load(const std::map<std::string, Tensor>& in, int64_t steps_taken);  // throws naming a missing/mismatched tensor
  const std::vector<ParamRef>& params() const { return params_; }

 private:
  Kernels& k_;
  std::vector<ParamRef> params_;
  std::vector<Tensor> m_, v_;
  std::vector<Kernels::AdamWTensor> batch_;  // params_, m_, v_ as adamw_step_many takes them
  bool refreshes_ = true;
  AdamWConfig cfg_;
  int64_t t_ = 0;
};

// Copies a backend tensor to a new host tensor of the same dtype.
Tensor to_host(Kernels& k, const Tensor& t);

}  // namespace temper
