// Kokkos backend: PolyNorm on a fused gate|up tensor gu[N, 2F] (the semantics of
// kernels/cpu/polynorm.cpp), one team per row:
//   p_k = x^k, r_k = 1/sqrt(mean_F(p_k^2) + eps),  P = w0 p3 r3 + w1 p2 r2 + w2 p1 r1 + b,  out = P u
// Backward with dP = dout u and S_k = sum_F dP p_k r_k:
//   du = dout P,  dp_k = w_k r_k (dP - p_k r_k S_k / F),  dx = dp_1 + 2 x dp_2 + 3 x^2 dp_3
//   dcoef += (sum_rows S_3, S_2, S_1, sum dP), the rows summed in order (per-row parts in double).
#include <cmath>

#include "kernels/kokkos/kokkos_common.h"
#include "kernels/motif_op_checks.h"

namespace temper {

void KokkosBackend::polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) {
  const char* op = "polynorm_forward";
  kk::check(op, DType::F32, {{"out", &out}, {"rstd", &rstd}, {"gu", &gu}, {"coef", &coef}});
  const PolyNormDims d = polynorm_dims(op, gu, out, "out", coef, &rstd);
  if (d.rows == 0) return;
  const int64_t F = d.F;
  const double e = eps;
  auto in = kk::cview<float>(gu);
  auto w = kk::cview<float>(coef);
  auto o = kk::view<float>(out);
  auto rs = kk::view<float>(rstd);
  Kokkos::parallel_for(
      "temper::polynorm_forward", kk::Team(d.rows, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t r = m.league_rank(), x0 = r * 2 * F;
        double s2 = 0, s4 = 0, s6 = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, F), [&](const int64_t f, double& a) { a += double(in(x0 + f)) * double(in(x0 + f)); }, s2);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, F),
            [&](const int64_t f, double& a) {
              const double x2 = double(in(x0 + f)) * double(in(x0 + f));
              a += x2 * x2;
            },
            s4);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, F),
            [&](const int64_t f, double& a) {
              const double x2 = double(in(x0 + f)) * double(in(x0 + f));
              a += x2 * x2 * x2;
            },
            s6);
        const double r3 = 1.0 / kk::math::sqrt(s6 / double(F) + e), r2 = 1.0 / kk::math::sqrt(s4 / double(F) + e),
                     r1 = 1.0 / kk::math::sqrt(s2 / double(F) + e);
        Kokkos::single(Kokkos::PerTeam(m), [&]() {
          rs(3 * r) = static_cast<float>(r3);
          rs(3 * r + 1) = static_cast<float>(r2);
          rs(3 * r + 2) = static_cast<float>(r1);
        });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, F), [&](const int64_t f) {
          const double v = in(x0 + f);
          const double P = double(w(0)) * v * v * v * r3 + double(w(1)) * v * v * r2 + double(w(2)) * v * r1 + double(w(3));
          o(r * F + f) = static_cast<float>(P * double(in(x0 + F + f)));
        });
      });
}

void KokkosBackend::polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu,
                                      const Tensor& coef, const Tensor& rstd) {
  const char* op = "polynorm_backward";
  kk::check(op, DType::F32,
            {{"dgu", &dgu}, {"dcoef", &dcoef}, {"dout", &dout}, {"gu", &gu}, {"coef", &coef}, {"rstd", &rstd}});
  const PolyNormDims d = polynorm_dims(op, gu, dout, "dout", coef, &rstd);
  check_shape(op, "dgu", dgu, gu.shape());
  check_shape(op, "dcoef", dcoef, {4});
  if (d.rows == 0) return;
  const int64_t F = d.F, rows = d.rows;
  Tensor part_t = alloc({rows, 4}, DType::F64);  // per row: S_3, S_2, S_1, sum dP
  auto part = kk::view<double>(part_t);
  auto in = kk::cview<float>(gu);
  auto w = kk::cview<float>(coef);
  auto go = kk::cview<float>(dout);
  auto rs = kk::cview<float>(rstd);
  auto dg = kk::view<float>(dgu);
  auto dc = kk::view<float>(dcoef);
  Kokkos::parallel_for(
      "temper::polynorm_backward", kk::Team(rows, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t r = m.league_rank(), x0 = r * 2 * F;
        const double r3 = rs(3 * r), r2 = rs(3 * r + 1), r1 = rs(3 * r + 2);
        double S3 = 0, S2 = 0, S1 = 0, Sb = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, F),
            [&](const int64_t f, double& a) {
              const double v = in(x0 + f);
              a += double(go(r * F + f)) * double(in(x0 + F + f)) * v * v * v * r3;
            },
            S3);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, F),
            [&](const int64_t f, double& a) {
              const double v = in(x0 + f);
              a += double(go(r * F + f)) * double(in(x0 + F + f)) * v * v * r2;
            },
            S2);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, F),
            [&](const int64_t f, double& a) { a += double(go(r * F + f)) * double(in(x0 + F + f)) * double(in(x0 + f)) * r1; },
            S1);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, F),
            [&](const int64_t f, double& a) { a += double(go(r * F + f)) * double(in(x0 + F + f)); }, Sb);
        Kokkos::single(Kokkos::PerTeam(m), [&]() {
          part(4 * r) = S3;
          part(4 * r + 1) = S2;
          part(4 * r + 2) = S1;
          part(4 * r + 3) = Sb;
        });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, F), [&](const int64_t f) {
          const double v = in(x0 + f), u = in(x0 + F + f), dP = double(go(r * F + f)) * u;
          const double n3 = v * v * v * r3, n2 = v * v * r2, n1 = v * r1;
          const double P = double(w(0)) * n3 + double(w(1)) * n2 + double(w(2)) * n1 + double(w(3));
          const double dp3 = double(w(0)) * r3 * (dP - n3 * S3 / double(F));
          const double dp2 = double(w(1)) * r2 * (dP - n2 * S2 / double(F));
          const double dp1 = double(w(2)) * r1 * (dP - n1 * S1 / double(F));
          dg(x0 + f) = static_cast<float>(dp1 + 2.0 * v * dp2 + 3.0 * v * v * dp3);
          dg(x0 + F + f) = static_cast<float>(double(go(r * F + f)) * P);
        });
      });
  Kokkos::parallel_for(
      "temper::polynorm_dcoef", kk::Range(0, 4), KOKKOS_LAMBDA(const int64_t j) {
        double acc = 0;
        for (int64_t r = 0; r < rows; ++r) acc += part(4 * r + j);
        dc(j) += static_cast<float>(acc);
      });
  Kokkos::fence();  // the per-row parts are freed on return
}

}  // namespace temper
