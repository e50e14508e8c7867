// Device-neutral shape checks of the Motif-architecture ops of kernels.h
// (PolyNorm, the differential-attention combination). Both backends call
// these; device and dtype checks stay in each backend.
#pragma once
#include <cstdint>

#include "kernels/op_checks.h"

namespace temper {

struct PolyNormDims {
  int64_t rows, F;
};

// gu[..., 2F], a [..., F] tensor `half`, coef[4], and (when given) rstd with 3 per row.
inline PolyNormDims polynorm_dims(const char* op, const Tensor& gu, const Tensor& half, const char* half_name,
                                  const Tensor& coef, const Tensor* rstd) {
  TEMPER_CHECK(gu.ndim() >= 1 && gu.dim(-1) % 2 == 0 && gu.dim(-1) > 0, op, ": 'gu' must be [..., 2F], got ",
               shape_str(gu.shape()));
  Shape want = gu.shape();
  want.back() /= 2;
  check_shape(op, half_name, half, want);
  check_shape(op, "coef", coef, {4});
  PolyNormDims d{half.numel() / want.back(), want.back()};
  if (rstd)
    TEMPER_CHECK(rstd->numel() == 3 * d.rows, op, ": 'rstd' has ", rstd->numel(), " elements, expected 3 per row (",
                 3 * d.rows, ")");
  return d;
}

struct DiffCombineDims {
  int64_t N, H, G, D, Dl;  // D: the width combined and normed per head; Dl: the lambda vectors' length
};

// a1[N,H,D], a2[N,G,D] with H % G == 0, lam[4,Dl] (any Dl > 0: the released models have
// D = 2 Dl, values twice as wide as queries/keys), weight[D], rstd N*H elements.
inline DiffCombineDims diff_combine_dims(const char* op, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                         const Tensor& weight, const Tensor& rstd) {
  TEMPER_CHECK(a1.ndim() == 3, op, ": 'a1' must be [N, H, D], got ", shape_str(a1.shape()));
  TEMPER_CHECK(a2.ndim() == 3 && a2.dim(0) == a1.dim(0) && a2.dim(2) == a1.dim(2), op, ": 'a2' has shape ",
               shape_str(a2.shape()), ", expected [", a1.dim(0), ", G, ", a1.dim(2), "] to match 'a1' ",
               shape_str(a1.shape()));
  TEMPER_CHECK(lam.ndim() == 2 && lam.dim(0) == 4 && lam.dim(1) > 0, op, ": 'lam' must be [4, Dl], got ",
               shape_str(lam.shape()));
  DiffCombineDims d{a1.dim(0), a1.dim(1), a2.dim(1), a1.dim(2), lam.dim(1)};
  TEMPER_CHECK(d.G > 0 && d.H % d.G == 0, op, ": ", d.H, " signal heads are not a multiple of ", d.G,
               " noise-control heads");
  TEMPER_CHECK(d.D > 0, op, ": empty head dimension");
  check_shape(op, "weight", weight, {d.D});
  TEMPER_CHECK(rstd.numel() == d.N * d.H, op, ": 'rstd' has ", rstd.numel(), " elements, expected N*H = ",
               d.N * d.H);
  return d;
}

}  // namespace temper
