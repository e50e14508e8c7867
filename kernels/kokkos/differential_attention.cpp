// Kokkos backend: the combination step of (grouped) differential attention (the
// semantics of kernels/cpu/differential_attention.cpp):
//   lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init,  s = 1 - lambda_init
//   y = a1[n,h] - lambda a2[n,g(h)],  out = s w y rstd,  rstd = 1/sqrt(mean_D(y^2) + eps)
// Backward with yn = y rstd, e = s w dout:
//   dy = rstd (e - yn mean_D(e yn)),  da1 = dy,  da2[g] = -lambda sum_{h in g} dy
//   dw += s sum dout yn,  dlambda = -sum dy a2[g(h)], and the chain rule into lam's rows.
// lam [4, Dl] is tiny: lambda is computed on the host from a copy. One team per
// token; per-token parts (dw, dlambda) are summed in token order by a second kernel.
#include <cmath>

#include "kernels/kokkos/kokkos_common.h"
#include "kernels/motif_op_checks.h"

namespace temper {

namespace {

using Scratch = Kokkos::View<double*, kk::Exec::scratch_memory_space, kk::Unmanaged>;

// e1 = exp(lq1 . lk1), e2 = exp(lq2 . lk2), from a host copy of lam [4, Dl].
void lambda_exps(Kernels& kb, const Tensor& lam, int64_t Dl, double& e1, double& e2) {
  Tensor h = Tensor::empty(lam.shape(), DType::F32, Device::CPU);
  kb.copy(h, lam);
  const float* L = h.data<float>();
  double d1 = 0, d2 = 0;
  for (int64_t i = 0; i < Dl; ++i) {
    d1 += double(L[i]) * double(L[Dl + i]);
    d2 += double(L[2 * Dl + i]) * double(L[3 * Dl + i]);
  }
  e1 = std::exp(d1);
  e2 = std::exp(d2);
}

}  // namespace

void KokkosBackend::diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2,
                                              const Tensor& lam, const Tensor& weight, double lambda_init,
                                              float eps) {
  const char* op = "diff_attn_combine_forward";
  kk::check(op, DType::F32,
            {{"out", &out}, {"rstd", &rstd}, {"a1", &a1}, {"a2", &a2}, {"lam", &lam}, {"weight", &weight}});
  const DiffCombineDims d = diff_combine_dims(op, a1, a2, lam, weight, rstd);
  check_shape(op, "out", out, a1.shape());
  if (d.N == 0) return;
  const int64_t H = d.H, G = d.G, D = d.D, group = d.H / d.G;
  double e1, e2;
  lambda_exps(*this, lam, d.Dl, e1, e2);
  const double lambda = e1 - e2 + lambda_init, s = 1.0 - lambda_init, ep = eps;
  auto x1 = kk::cview<float>(a1);
  auto x2 = kk::cview<float>(a2);
  auto w = kk::cview<float>(weight);
  auto o = kk::view<float>(out);
  auto rs = kk::view<float>(rstd);
  Kokkos::parallel_for(
      "temper::diff_attn_combine_forward", kk::Team(d.N * H, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t t = m.league_rank(), n = t / H, h = t % H;
        const int64_t p1 = t * D, p2 = (n * G + h / group) * D;
        double ss = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, D),
            [&](const int64_t i, double& a) {
              const double y = double(x1(p1 + i)) - lambda * double(x2(p2 + i));
              a += y * y;
            },
            ss);
        const double r = 1.0 / kk::math::sqrt(ss / double(D) + ep);
        Kokkos::single(Kokkos::PerTeam(m), [&]() { rs(t) = static_cast<float>(r); });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t i) {
          const double y = double(x1(p1 + i)) - lambda * double(x2(p2 + i));
          o(p1 + i) = static_cast<float>(s * double(w(i)) * y * r);
        });
      });
}

void KokkosBackend::diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight,
                                               const Tensor& dout, const Tensor& a1, const Tensor& a2,
                                               const Tensor& lam, const Tensor& weight, const Tensor& rstd,
                                               double lambda_init) {
  const char* op = "diff_attn_combine_backward";
  kk::check(op, DType::F32,
            {{"da1", &da1}, {"da2", &da2}, {"dlam", &dlam}, {"dweight", &dweight}, {"dout", &dout}, {"a1", &a1},
             {"a2", &a2}, {"lam", &lam}, {"weight", &weight}, {"rstd", &rstd}});
  const DiffCombineDims d = diff_combine_dims(op, a1, a2, lam, weight, rstd);
  check_shape(op, "da1", da1, a1.shape());
  check_shape(op, "da2", da2, a2.shape());
  check_shape(op, "dout", dout, a1.shape());
  check_shape(op, "dlam", dlam, lam.shape());
  check_shape(op, "dweight", dweight, weight.shape());
  if (d.N == 0) return;
  const int64_t N = d.N, H = d.H, G = d.G, D = d.D, Dl = d.Dl, group = d.H / d.G;
  double e1, e2;
  lambda_exps(*this, lam, Dl, e1, e2);
  const double lambda = e1 - e2 + lambda_init, s = 1.0 - lambda_init;
  Tensor dw_t = alloc({N, D}, DType::F64), dl_t = alloc({N}, DType::F64);
  zero(dw_t);
  auto dwp = kk::view<double>(dw_t);
  auto dlp = kk::view<double>(dl_t);
  auto x1 = kk::cview<float>(a1);
  auto x2 = kk::cview<float>(a2);
  auto w = kk::cview<float>(weight);
  auto go = kk::cview<float>(dout);
  auto rs = kk::cview<float>(rstd);
  auto g1 = kk::view<float>(da1);
  auto g2 = kk::view<float>(da2);
  const size_t shmem = Scratch::shmem_size(size_t(G * D));
  Kokkos::parallel_for(
      "temper::diff_attn_combine_backward", kk::Team(N, Kokkos::AUTO).set_scratch_size(0, Kokkos::PerTeam(shmem)),
      KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t n = m.league_rank();
        Scratch acc2(m.team_scratch(0), size_t(G * D));
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, G * D), [&](const int64_t j) { acc2(j) = 0.0; });
        m.team_barrier();
        double dl = 0;
        for (int64_t h = 0; h < H; ++h) {
          const int64_t p1 = (n * H + h) * D, p2 = (n * G + h / group) * D, a0 = (h / group) * D;
          const double r = rs(n * H + h);
          double dot = 0;  // sum_D e * yn
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(m, D),
              [&](const int64_t i, double& a) {
                const double yn = (double(x1(p1 + i)) - lambda * double(x2(p2 + i))) * r;
                a += s * double(w(i)) * double(go(p1 + i)) * yn;
                dwp(n * D + i) += s * double(go(p1 + i)) * yn;
              },
              dot);
          double dlh = 0;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(m, D),
              [&](const int64_t i, double& a) {
                const double yn = (double(x1(p1 + i)) - lambda * double(x2(p2 + i))) * r;
                const double dy = r * (s * double(w(i)) * double(go(p1 + i)) - yn * dot / double(D));
                g1(p1 + i) = static_cast<float>(dy);
                acc2(a0 + i) -= lambda * dy;
                a -= dy * double(x2(p2 + i));
              },
              dlh);
          dl += dlh;
        }
        m.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, G * D),
                             [&](const int64_t j) { g2(n * G * D + j) = static_cast<float>(acc2(j)); });
        Kokkos::single(Kokkos::PerTeam(m), [&]() { dlp(n) = dl; });
      });
  auto dw = kk::view<float>(dweight);
  Kokkos::parallel_for(
      "temper::diff_attn_combine_dweight", kk::Range(0, D), KOKKOS_LAMBDA(const int64_t i) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) acc += dwp(n * D + i);
        dw(i) += static_cast<float>(acc);
      });
  // dlambda, summed in token order on the host (N doubles)
  Tensor dl_h = Tensor::empty({N}, DType::F64, Device::CPU);
  copy(dl_h, dl_t);
  double dlambda = 0;
  for (int64_t n = 0; n < N; ++n) dlambda += dl_h.data<double>()[n];
  auto L = kk::cview<float>(lam);
  auto dL = kk::view<float>(dlam);
  Kokkos::parallel_for(
      "temper::diff_attn_combine_dlam", kk::Range(0, Dl), KOKKOS_LAMBDA(const int64_t i) {
        dL(i) += static_cast<float>(dlambda * e1 * double(L(Dl + i)));
        dL(Dl + i) += static_cast<float>(dlambda * e1 * double(L(i)));
        dL(2 * Dl + i) += static_cast<float>(-dlambda * e2 * double(L(3 * Dl + i)));
        dL(3 * Dl + i) += static_cast<float>(-dlambda * e2 * double(L(2 * Dl + i)));
      });
  Kokkos::fence();  // the per-token parts are freed on return
}

}  // namespace temper
