// CPU backend: SwiGLU on a fused gate|up tensor gu[N, 2F]:
//   out = silu(g) * u,  silu(g) = g * sigmoid(g)
//   dg = dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))),  du = dout * silu(g)
#include <cmath>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

// Returns F after checking gu[..., 2F] against an [..., F] tensor.
int64_t swiglu_width(const char* op, const Tensor& gu, const Tensor& half, const char* half_name) {
  TEMPER_CHECK(gu.ndim() >= 1 && gu.dim(-1) % 2 == 0, op, ": 'gu' must be [..., 2F], got ",
               shape_str(gu.shape()));
  Shape want = gu.shape();
  want.back() /= 2;
  cpu::check_shape(op, half_name, half, want);
  return want.back();
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

void CpuKernels::swiglu_forward(Tensor& out, const Tensor& gu) {
  const char* op = "swiglu_forward";
  DType dt = cpu::common_float_dtype(op, {{"out", &out}, {"gu", &gu}});
  const int64_t F = swiglu_width(op, gu, out, "out");
  const int64_t rows = F > 0 ? out.numel() / F : 0;
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* in = gu.data<T>();
    T* o = out.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t f = 0; f < F; ++f) {
        const double g = in[r * 2 * F + f], u = in[r * 2 * F + F + f];
        o[r * F + f] = static_cast<T>(g * sigmoid(g) * u);
      }
  });
}

void CpuKernels::swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) {
  const char* op = "swiglu_backward";
  DType dt = cpu::common_float_dtype(op, {{"dgu", &dgu}, {"dout", &dout}, {"gu", &gu}});
  const int64_t F = swiglu_width(op, gu, dout, "dout");
  cpu::check_shape(op, "dgu", dgu, gu.shape());
  const int64_t rows = F > 0 ? dout.numel() / F : 0;
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* in = gu.data<T>();
    const T* go = dout.data<T>();
    T* d = dgu.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t f = 0; f < F; ++f) {
        const double g = in[r * 2 * F + f], u = in[r * 2 * F + F + f], dy = go[r * F + f];
        const double sg = sigmoid(g);
        d[r * 2 * F + f] = static_cast<T>(dy * u * sg * (1.0 + g * (1.0 - sg)));
        d[r * 2 * F + F + f] = static_cast<T>(dy * g * sg);
      }
  });
}

}  // namespace temper
