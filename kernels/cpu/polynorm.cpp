// CPU backend: PolyNorm on a fused gate|up tensor gu[N, 2F] (gate x, up u).
//   p_k = x^k (k = 3, 2, 1 paired with coef w0, w1, w2), r_k = 1/sqrt(mean_F(p_k^2) + eps)
//   P = w0 p3 r3 + w1 p2 r2 + w2 p1 r1 + b,   out = P * u
// Backward, per row, with dP = dout * u and S_k = sum_F dP * p_k r_k:
//   du = dout * P
//   dp_k = w_k r_k (dP - p_k r_k S_k / F)      (RMS-norm backward, no weight vector)
//   dx = dp_1 + 2 x dp_2 + 3 x^2 dp_3
//   dw0 += sum_rows S_3, dw1 += S_2, dw2 += S_1, db += sum dP
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/motif_op_checks.h"

namespace temper {

void CpuKernels::polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) {
  const char* op = "polynorm_forward";
  DType dt = cpu::common_float_dtype(op, {{"out", &out}, {"rstd", &rstd}, {"gu", &gu}, {"coef", &coef}});
  const PolyNormDims d = polynorm_dims(op, gu, out, "out", coef, &rstd);
  const int64_t F = d.F;
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* in = gu.data<T>();
    const T* w = coef.data<T>();
    T* o = out.data<T>();
    T* rs = rstd.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < d.rows; ++r) {
      const T* x = in + r * 2 * F;
      double s2 = 0, s4 = 0, s6 = 0;
      for (int64_t f = 0; f < F; ++f) {
        const double x2 = double(x[f]) * double(x[f]);
        s2 += x2;
        s4 += x2 * x2;
        s6 += x2 * x2 * x2;
      }
      const double r3 = 1.0 / std::sqrt(s6 / double(F) + eps), r2 = 1.0 / std::sqrt(s4 / double(F) + eps),
                   r1 = 1.0 / std::sqrt(s2 / double(F) + eps);
      rs[3 * r] = static_cast<T>(r3);
      rs[3 * r + 1] = static_cast<T>(r2);
      rs[3 * r + 2] = static_cast<T>(r1);
      for (int64_t f = 0; f < F; ++f) {
        const double v = x[f];
        const double P = double(w[0]) * v * v * v * r3 + double(w[1]) * v * v * r2 + double(w[2]) * v * r1 + double(w[3]);
        o[r * F + f] = static_cast<T>(P * double(x[F + f]));
      }
    }
  });
}

void CpuKernels::polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu,
                                   const Tensor& coef, const Tensor& rstd) {
  const char* op = "polynorm_backward";
  DType dt = cpu::common_float_dtype(
      op, {{"dgu", &dgu}, {"dcoef", &dcoef}, {"dout", &dout}, {"gu", &gu}, {"coef", &coef}, {"rstd", &rstd}});
  const PolyNormDims d = polynorm_dims(op, gu, dout, "dout", coef, &rstd);
  cpu::check_shape(op, "dgu", dgu, gu.shape());
  cpu::check_shape(op, "dcoef", dcoef, {4});
  const int64_t F = d.F;
  std::vector<double> part(size_t(4 * d.rows));  // per row: S_3, S_2, S_1, sum dP (summed in order below)
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* in = gu.data<T>();
    const T* w = coef.data<T>();
    const T* go = dout.data<T>();
    const T* rs = rstd.data<T>();
    T* dg = dgu.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < d.rows; ++r) {
      const T* x = in + r * 2 * F;
      const T* g = go + r * F;
      const double r3 = rs[3 * r], r2 = rs[3 * r + 1], r1 = rs[3 * r + 2];
      double S3 = 0, S2 = 0, S1 = 0, Sb = 0;
      for (int64_t f = 0; f < F; ++f) {
        const double v = x[f], dP = double(g[f]) * double(x[F + f]);
        S3 += dP * v * v * v * r3;
        S2 += dP * v * v * r2;
        S1 += dP * v * r1;
        Sb += dP;
      }
      part[size_t(4 * r)] = S3;
      part[size_t(4 * r + 1)] = S2;
      part[size_t(4 * r + 2)] = S1;
      part[size_t(4 * r + 3)] = Sb;
      T* dr = dg + r * 2 * F;
      for (int64_t f = 0; f < F; ++f) {
        const double v = x[f], u = x[F + f], dP = double(g[f]) * u;
        const double n3 = v * v * v * r3, n2 = v * v * r2, n1 = v * r1;
        const double P = double(w[0]) * n3 + double(w[1]) * n2 + double(w[2]) * n1 + double(w[3]);
        const double dp3 = double(w[0]) * r3 * (dP - n3 * S3 / double(F));
        const double dp2 = double(w[1]) * r2 * (dP - n2 * S2 / double(F));
        const double dp1 = double(w[2]) * r1 * (dP - n1 * S1 / double(F));
        dr[f] = static_cast<T>(dp1 + 2.0 * v * dp2 + 3.0 * v * v * dp3);
        dr[F + f] = static_cast<T>(double(g[f]) * P);
      }
    }
    T* dc = dcoef.data<T>();
    for (int j = 0; j < 4; ++j) {
      double acc = 0;
      for (int64_t r = 0; r < d.rows; ++r) acc += part[size_t(4 * r + j)];
      dc[j] += static_cast<T>(acc);
    }
  });
}

}  // namespace temper
