// CPU backend: the combination step of (grouped) differential attention.
//   lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init,  s = 1 - lambda_init
//   y = a1[n,h] - lambda a2[n,g(h)],  g(h) = h / (H/G)
//   out = s * w * y * rstd,  rstd = 1/sqrt(mean_D(y^2) + eps)
// Backward with yn = y * rstd, e = s * w * dout:
//   dy = rstd (e - yn mean_D(e yn)),  da1 = dy,  da2[g] = -lambda sum_{h in g} dy
//   dw += s sum dout yn,  dlambda = -sum dy a2[g(h)]
//   dlq1 += dlambda e1 lk1, dlk1 += dlambda e1 lq1, dlq2 -= dlambda e2 lk2, dlk2 -= dlambda e2 lq2
//   with e1 = exp(lq1 . lk1), e2 = exp(lq2 . lk2).
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/motif_op_checks.h"

namespace temper {

namespace {

// e1 = exp(lq1 . lk1), e2 = exp(lq2 . lk2) from lam[4, D] (D: the lambda vectors' length).
template <typename T>
void lambda_exps(const T* lam, int64_t D, double& e1, double& e2) {
  double d1 = 0, d2 = 0;
  for (int64_t i = 0; i < D; ++i) {
    d1 += double(lam[i]) * double(lam[D + i]);
    d2 += double(lam[2 * D + i]) * double(lam[3 * D + i]);
  }
  e1 = std::exp(d1);
  e2 = std::exp(d2);
}

}  // namespace

void CpuKernels::diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2,
                                           const Tensor& lam, const Tensor& weight, double lambda_init, float eps) {
  const char* op = "diff_attn_combine_forward";
  DType dt = cpu::common_float_dtype(
      op, {{"out", &out}, {"rstd", &rstd}, {"a1", &a1}, {"a2", &a2}, {"lam", &lam}, {"weight", &weight}});
  const DiffCombineDims d = diff_combine_dims(op, a1, a2, lam, weight, rstd);
  cpu::check_shape(op, "out", out, a1.shape());
  const int64_t H = d.H, G = d.G, D = d.D, group = d.H / d.G;
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    double e1, e2;
    lambda_exps(lam.data<T>(), d.Dl, e1, e2);
    const double lambda = e1 - e2 + double(lambda_init), s = 1.0 - double(lambda_init);
    const T* x1 = a1.data<T>();
    const T* x2 = a2.data<T>();
    const T* w = weight.data<T>();
    T* o = out.data<T>();
    T* rs = rstd.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < d.N; ++n) {
      std::vector<double> y(static_cast<size_t>(D));
      for (int64_t h = 0; h < H; ++h) {
        const T* p1 = x1 + (n * H + h) * D;
        const T* p2 = x2 + (n * G + h / group) * D;
        double ss = 0;
        for (int64_t i = 0; i < D; ++i) {
          y[size_t(i)] = double(p1[i]) - lambda * double(p2[i]);
          ss += y[size_t(i)] * y[size_t(i)];
        }
        const double r = 1.0 / std::sqrt(ss / double(D) + double(eps));
        rs[n * H + h] = static_cast<T>(r);
        for (int64_t i = 0; i < D; ++i) o[(n * H + h) * D + i] = static_cast<T>(s * double(w[i]) * y[size_t(i)] * r);
      }
    }
  });
}

void CpuKernels::diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight,
                                            const Tensor& dout, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                            const Tensor& weight, const Tensor& rstd, double lambda_init) {
  const char* op = "diff_attn_combine_backward";
  DType dt = cpu::common_float_dtype(op, {{"da1", &da1},
                                          {"da2", &da2},
                                          {"dlam", &dlam},
                                          {"dweight", &dweight},
                                          {"dout", &dout},
                                          {"a1", &a1},
                                          {"a2", &a2},
                                          {"lam", &lam},
                                          {"weight", &weight},
                                          {"rstd", &rstd}});
  const DiffCombineDims d = diff_combine_dims(op, a1, a2, lam, weight, rstd);
  cpu::check_shape(op, "da1", da1, a1.shape());
  cpu::check_shape(op, "da2", da2, a2.shape());
  cpu::check_shape(op, "dout", dout, a1.shape());
  cpu::check_shape(op, "dlam", dlam, lam.shape());
  cpu::check_shape(op, "dweight", dweight, weight.shape());
  const int64_t H = d.H, G = d.G, D = d.D, group = d.H / d.G;
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* L = lam.data<T>();
    const int64_t Dl = d.Dl;
    double e1, e2;
    lambda_exps(L, Dl, e1, e2);
    const double lambda = e1 - e2 + double(lambda_init), s = 1.0 - double(lambda_init);
    const T* x1 = a1.data<T>();
    const T* x2 = a2.data<T>();
    const T* w = weight.data<T>();
    const T* go = dout.data<T>();
    const T* rs = rstd.data<T>();
    T* g1 = da1.data<T>();
    T* g2 = da2.data<T>();
    std::vector<double> dlambda_part(size_t(d.N), 0.0);
    std::vector<double> dw_part(size_t(d.N * D), 0.0);  // per token, summed in token order below
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < d.N; ++n) {
      std::vector<double> y(static_cast<size_t>(D)), acc2(size_t(G * D), 0.0);
      double dl = 0;
      for (int64_t h = 0; h < H; ++h) {
        const T* p1 = x1 + (n * H + h) * D;
        const T* p2 = x2 + (n * G + h / group) * D;
        const T* gr = go + (n * H + h) * D;
        const double r = rs[n * H + h];
        double dot = 0;  // sum_D e * yn
        for (int64_t i = 0; i < D; ++i) {
          y[size_t(i)] = (double(p1[i]) - lambda * double(p2[i])) * r;  // yn
          dot += s * double(w[i]) * double(gr[i]) * y[size_t(i)];
          dw_part[size_t(n * D + i)] += s * double(gr[i]) * y[size_t(i)];
        }
        for (int64_t i = 0; i < D; ++i) {
          const double dy = r * (s * double(w[i]) * double(gr[i]) - y[size_t(i)] * dot / double(D));
          g1[(n * H + h) * D + i] = static_cast<T>(dy);
          acc2[size_t((h / group) * D + i)] -= lambda * dy;
          dl -= dy * double(p2[i]);
        }
      }
      for (int64_t j = 0; j < G * D; ++j) g2[n * G * D + j] = static_cast<T>(acc2[size_t(j)]);
      dlambda_part[size_t(n)] = dl;
    }
    double dlambda = 0;
    for (double v : dlambda_part) dlambda += v;
    T* dw = dweight.data<T>();
    for (int64_t i = 0; i < D; ++i) {
      double acc = 0;
      for (int64_t n = 0; n < d.N; ++n) acc += dw_part[size_t(n * D + i)];
      dw[i] += static_cast<T>(acc);
    }
    T* dL = dlam.data<T>();
    for (int64_t i = 0; i < Dl; ++i) {
      dL[i] += static_cast<T>(dlambda * e1 * double(L[Dl + i]));
      dL[Dl + i] += static_cast<T>(dlambda * e1 * double(L[i]));
      dL[2 * Dl + i] += static_cast<T>(-dlambda * e2 * double(L[3 * Dl + i]));
      dL[3 * Dl + i] += static_cast<T>(-dlambda * e2 * double(L[2 * Dl + i]));
    }
  });
}

}  // namespace temper
