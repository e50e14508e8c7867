// Kokkos backend: RMSNorm over the last dimension, one team per row.
//   y = x * r * w,  r = 1/sqrt(mean(x^2) + eps)
//   dx_i = r w_i g_i - x_i r^3 / C * sum_j w_j g_j x_j,  dw_i += sum_rows g_i x_i r
// Row sums in double; the weight gradient sums each column over the rows in order.
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace {
int64_t norm_width(const char* op, const Tensor& inp, const Tensor& weight) {
  TEMPER_CHECK(weight.ndim() == 1, op, ": 'weight' must be 1-D [C], got ", shape_str(weight.shape()));
  const int64_t C = weight.dim(0);
  TEMPER_CHECK(inp.ndim() >= 1 && inp.dim(-1) == C, op, ": 'inp' has shape ", shape_str(inp.shape()),
               " but 'weight' has ", shape_str(weight.shape()), " (the last dimension must match)");
  TEMPER_CHECK(C > 0, op, ": empty normalised dimension");
  return C;
}
}  // namespace

void KokkosBackend::rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) {
  const char* op = "rmsnorm_forward";
  kk::check(op, DType::F32, {{"out", &out}, {"rstd", &rstd}, {"inp", &inp}, {"weight", &weight}});
  const int64_t C = norm_width(op, inp, weight);
  const int64_t rows = inp.numel() / C;
  check_shape(op, "out", out, inp.shape());
  TEMPER_CHECK(rstd.numel() == rows, op, ": 'rstd' has ", rstd.numel(), " elements, expected ", rows,
               " (one per row of 'inp' ", shape_str(inp.shape()), ")");
  auto x = kk::cview<float>(inp);
  auto w = kk::cview<float>(weight);
  auto y = kk::view<float>(out);
  auto rs = kk::view<float>(rstd);
  Kokkos::parallel_for(
      "temper::rmsnorm_forward", kk::Team(rows, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t r = m.league_rank();
        double ss = 0.0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, C),
            [&](const int64_t c, double& acc) { acc += double(x(r * C + c)) * double(x(r * C + c)); }, ss);
        const float s = static_cast<float>(1.0 / kk::math::sqrt(ss / double(C) + double(eps)));
        Kokkos::single(Kokkos::PerTeam(m), [&]() { rs(r) = s; });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, C),
                             [&](const int64_t c) { y(r * C + c) = x(r * C + c) * s * w(c); });
      });
}

void KokkosBackend::rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout,
                                     const Tensor& inp, const Tensor& weight, const Tensor& rstd) {
  const char* op = "rmsnorm_backward";
  kk::check(op, DType::F32,
            {{"dinp", &dinp}, {"dweight", &dweight}, {"dout", &dout}, {"inp", &inp}, {"weight", &weight},
             {"rstd", &rstd}});
  const int64_t C = norm_width(op, inp, weight);
  const int64_t rows = inp.numel() / C;
  check_shape(op, "dinp", dinp, inp.shape());
  check_shape(op, "dout", dout, inp.shape());
  check_shape(op, "dweight", dweight, weight.shape());
  TEMPER_CHECK(rstd.numel() == rows, op, ": 'rstd' has ", rstd.numel(), " elements, expected ", rows);
  auto x = kk::cview<float>(inp);
  auto w = kk::cview<float>(weight);
  auto g = kk::cview<float>(dout);
  auto rs = kk::cview<float>(rstd);
  auto dx = kk::view<float>(dinp);
  auto dw = kk::view<float>(dweight);
  Kokkos::parallel_for(
      "temper::rmsnorm_backward_dx", kk::Team(rows, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t r = m.league_rank();
        const double s = rs(r);
        double dot = 0.0;  // sum_j w_j g_j x_j
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, C),
            [&](const int64_t c, double& acc) { acc += double(w(c)) * double(g(r * C + c)) * double(x(r * C + c)); },
            dot);
        const double k = s * s * s * dot / double(C);
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, C), [&](const int64_t c) {
          const float v = static_cast<float>(s * double(w(c)) * double(g(r * C + c)) - k * double(x(r * C + c)));
          dx(r * C + c) = accumulate ? dx(r * C + c) + v : v;
        });
      });
  Kokkos::parallel_for(
      "temper::rmsnorm_backward_dw", kk::Range(0, C), KOKKOS_LAMBDA(const int64_t c) {
        double acc = 0.0;
        for (int64_t r = 0; r < rows; ++r) acc += double(g(r * C + c)) * double(x(r * C + c)) * double(rs(r));
        dw(c) += static_cast<float>(acc);
      });
}

}  // namespace temper
