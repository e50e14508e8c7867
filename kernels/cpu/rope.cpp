// CPU backend: rotary position embedding, "rotate half" convention, in place.
// For i < D/2, with a = pos * theta^(-2i/D):
//   forward  (x_i, x_{i+D/2}) <- (x_i cos a - x_{i+D/2} sin a, x_{i+D/2} cos a + x_i sin a)
//   backward applies the inverse (transposed) rotation, i.e. angle -a.
// Angles are computed in double on both the f32 and the f64 path.
#include <cmath>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

// sign = +1 rotates forward, -1 applies the inverse rotation.
void rope_apply(const char* op, Tensor& x, const Tensor& positions, float theta, double sign) {
  DType dt = cpu::common_float_dtype(op, {{"x", &x}});
  TEMPER_CHECK(x.ndim() == 3, op, ": 'x' must be [N, H, D], got ", shape_str(x.shape()));
  const int64_t N = x.dim(0), H = x.dim(1), D = x.dim(2);
  TEMPER_CHECK(D % 2 == 0, op, ": head dimension D = ", D, " must be even for rotate-half RoPE");
  TEMPER_CHECK(theta > 0.0f, op, ": rope theta must be positive, got ", theta);
  cpu::check_i32(op, "positions", positions, N);
  const int64_t half = D / 2;
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* p = x.data<T>();
    const int32_t* pos = positions.data<int32_t>();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < half; ++i) {
        const double inv_freq = std::pow(double(theta), -2.0 * double(i) / double(D));
        const double a = double(pos[n]) * inv_freq;
        const double c = std::cos(a), s = sign * std::sin(a);
        for (int64_t h = 0; h < H; ++h) {
          T* row = p + (n * H + h) * D;
          const double x1 = row[i], x2 = row[i + half];
          row[i] = static_cast<T>(x1 * c - x2 * s);
          row[i + half] = static_cast<T>(x2 * c + x1 * s);
        }
      }
    }
  });
}

}  // namespace

void CpuKernels::rope_forward(Tensor& x, const Tensor& positions, float theta) {
  rope_apply("rope_forward", x, positions, theta, +1.0);
}

void CpuKernels::rope_backward(Tensor& dx, const Tensor& positions, float theta) {
  rope_apply("rope_backward", dx, positions, theta, -1.0);
}

}  // namespace temper
