// CPU backend: RMSNorm over the last dimension, forward and backward.
//   y = x * r * w,  r = 1/sqrt(mean(x^2) + eps)
//   dx_i = r * w_i g_i - x_i * r^3 / C * sum_j w_j g_j x_j,  dw_i += sum_rows g_i x_i r
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

// Returns C (= weight size) after checking that inp's last dimension matches.
int64_t norm_width(const char* op, const Tensor& inp, const Tensor& weight) {
  TEMPER_CHECK(weight.ndim() == 1, op, ": 'weight' must be 1-D [C], got ", shape_str(weight.shape()));
  const int64_t C = weight.dim(0);
  TEMPER_CHECK(inp.ndim() >= 1 && inp.dim(-1) == C, op, ": 'inp' has shape ", shape_str(inp.shape()),
               " but 'weight' has ", shape_str(weight.shape()), " (the last dimension must match)");
  return C;
}

}  // namespace

void CpuKernels::rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) {
  const char* op = "rmsnorm_forward";
  DType dt = cpu::common_float_dtype(op, {{"out", &out}, {"rstd", &rstd}, {"inp", &inp}, {"weight", &weight}});
  const int64_t C = norm_width(op, inp, weight);
  TEMPER_CHECK(C > 0, op, ": empty normalised dimension");
  const int64_t rows = inp.numel() / C;
  cpu::check_shape(op, "out", out, inp.shape());
  TEMPER_CHECK(rstd.numel() == rows, op, ": 'rstd' has ", rstd.numel(), " elements, expected ", rows,
               " (one per row of 'inp' ", shape_str(inp.shape()), ")");
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* x = inp.data<T>();
    const T* w = weight.data<T>();
    T* y = out.data<T>();
    T* rs = rstd.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * C;
      double ss = 0.0;
      for (int64_t c = 0; c < C; ++c) ss += double(xr[c]) * double(xr[c]);
      const T s = static_cast<T>(1.0 / std::sqrt(ss / double(C) + double(eps)));
      rs[r] = s;
      for (int64_t c = 0; c < C; ++c) y[r * C + c] = xr[c] * s * w[c];
    }
  });
}

void CpuKernels::rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout,
                                  const Tensor& inp, const Tensor& weight, const Tensor& rstd) {
  const char* op = "rmsnorm_backward";
  DType dt = cpu::common_float_dtype(op, {{"dinp", &dinp},
                                          {"dweight", &dweight},
                                          {"dout", &dout},
                                          {"inp", &inp},
                                          {"weight", &weight},
                                          {"rstd", &rstd}});
  const int64_t C = norm_width(op, inp, weight);
  TEMPER_CHECK(C > 0, op, ": empty normalised dimension");
  const int64_t rows = inp.numel() / C;
  cpu::check_shape(op, "dinp", dinp, inp.shape());
  cpu::check_shape(op, "dout", dout, inp.shape());
  cpu::check_shape(op, "dweight", dweight, weight.shape());
  TEMPER_CHECK(rstd.numel() == rows, op, ": 'rstd' has ", rstd.numel(), " elements, expected ", rows);
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* x = inp.data<T>();
    const T* w = weight.data<T>();
    const T* g = dout.data<T>();
    const T* rs = rstd.data<T>();
    T* dx = dinp.data<T>();
    T* dw = dweight.data<T>();
    // Input gradient, one row per iteration.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * C;
      const T* gr = g + r * C;
      const double s = rs[r];
      double dot = 0.0;  // sum_j w_j g_j x_j
      for (int64_t c = 0; c < C; ++c) dot += double(w[c]) * double(gr[c]) * double(xr[c]);
      const double k = s * s * s * dot / double(C);
      T* dxr = dx + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const T v = static_cast<T>(s * double(w[c]) * double(gr[c]) - k * double(xr[c]));
        dxr[c] = accumulate ? dxr[c] + v : v;
      }
    }
    // Weight gradient: each thread owns a set of columns and sums over rows.
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0.0;
      for (int64_t r = 0; r < rows; ++r) acc += double(g[r * C + c]) * double(x[r * C + c]) * double(rs[r]);
      dw[c] += static_cast<T>(acc);
    }
  });
}

}  // namespace temper
