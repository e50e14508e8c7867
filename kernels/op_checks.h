// Argument checks that do not depend on the device: the shapes an op of
// kernels.h accepts, with messages naming the op and the tensor. Both
// backends call these; device and dtype checks stay in each backend.
#pragma once
#include <cstdint>

#include "core/error.h"
#include "core/tensor.h"

namespace temper {

// Exact shape check: "op: 'name' has shape [..], expected [..]".
inline void check_shape(const char* op, const char* name, const Tensor& t, const Shape& want) {
  TEMPER_CHECK(t.shape() == want, op, ": '", name, "' has shape ", shape_str(t.shape()), ", expected ",
               shape_str(want));
}

struct LinearDims {
  int64_t rows, C, OC;
};

// A linear layer: inp[..., C] against weight[OC, C] and a [..., OC] output-like tensor.
inline LinearDims linear_dims(const char* op, const Tensor& inp, const Tensor& weight, const Tensor& out,
                              const char* out_name) {
  TEMPER_CHECK(weight.ndim() == 2, op, ": 'weight' must be [OC, C], got ", shape_str(weight.shape()));
  const int64_t OC = weight.dim(0), C = weight.dim(1);
  TEMPER_CHECK(inp.ndim() >= 1 && inp.dim(-1) == C, op, ": 'inp' has shape ", shape_str(inp.shape()),
               " but 'weight' is ", shape_str(weight.shape()), " (inp's last dimension must equal weight's C)");
  const int64_t rows = C > 0 ? inp.numel() / C : 0;
  Shape want = inp.shape();
  want.back() = OC;
  check_shape(op, out_name, out, want);
  return {rows, C, OC};
}

struct HeadDims {
  int64_t N, C, V;
};

// The output head: x[N, C], W[V, C] (V > 0), logp[N]. Targets are checked by the backend.
inline HeadDims head_dims(const char* op, const Tensor& logp, const Tensor& x, const Tensor& W) {
  TEMPER_CHECK(x.ndim() == 2, op, ": 'x' must be [N, C], got ", shape_str(x.shape()));
  TEMPER_CHECK(W.ndim() == 2 && W.dim(1) == x.dim(1), op, ": 'W' has shape ", shape_str(W.shape()), ", expected [V, ",
               x.dim(1), "] to match 'x' ", shape_str(x.shape()));
  HeadDims d{x.dim(0), x.dim(1), W.dim(0)};
  TEMPER_CHECK(d.V > 0, op, ": 'W' has no vocabulary rows");
  check_shape(op, "logp", logp, {d.N});
  return d;
}

struct QkDims {
  int64_t N, H, KVH, D;
};

// attention_max_logit: q[N, H, D], k[N, KVH, D] with H % KVH == 0, out[H].
inline QkDims max_logit_dims(const char* op, const Tensor& out, const Tensor& q, const Tensor& k) {
  TEMPER_CHECK(q.ndim() == 3, op, ": 'q' must be [N, H, D], got ", shape_str(q.shape()));
  QkDims d{q.dim(0), q.dim(1), 0, q.dim(2)};
  TEMPER_CHECK(k.ndim() == 3 && k.dim(0) == d.N && k.dim(2) == d.D, op, ": 'k' has shape ", shape_str(k.shape()),
               ", expected [", d.N, ", KVH, ", d.D, "] to match 'q' ", shape_str(q.shape()));
  d.KVH = k.dim(1);
  TEMPER_CHECK(d.KVH > 0 && d.H % d.KVH == 0 && d.D > 0, op, ": query heads H = ", d.H,
               " must be a multiple of kv heads KVH = ", d.KVH, " (and D > 0)");
  check_shape(op, "out", out, {d.H});
  return d;
}

}  // namespace temper
