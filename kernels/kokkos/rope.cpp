// Kokkos backend: rotary position embedding, "rotate half" convention, in place;
// backward applies the inverse rotation (angle -a). Angles in double, as on the CPU.
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace kk {
// sign = +1 rotates forward, -1 applies the inverse rotation. (Not in an unnamed
// namespace: nvcc rejects device lambdas in functions with internal linkage.)
void rope_apply(const char* op, Tensor& x, const Tensor& positions, float theta, double sign) {
  kk::check(op, DType::F32, {{"x", &x}});
  TEMPER_CHECK(x.ndim() == 3, op, ": 'x' must be [N, H, D], got ", shape_str(x.shape()));
  const int64_t N = x.dim(0), H = x.dim(1), D = x.dim(2);
  TEMPER_CHECK(D % 2 == 0, op, ": head dimension D = ", D, " must be even for rotate-half RoPE");
  TEMPER_CHECK(theta > 0.0f, op, ": rope theta must be positive, got ", theta);
  kk::check_i32(op, "positions", positions, N);
  const int64_t half = D / 2;
  auto p = kk::view<float>(x);
  auto pos = kk::cview<int32_t>(positions);
  const double th = theta;
  Kokkos::parallel_for(
      "temper::rope", kk::Range(0, N * half), KOKKOS_LAMBDA(const int64_t j) {
        const int64_t n = j / half, i = j % half;
        const double inv_freq = kk::math::pow(th, -2.0 * double(i) / double(D));
        const double a = double(pos(n)) * inv_freq;
        const double c = kk::math::cos(a), s = sign * kk::math::sin(a);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t row = (n * H + h) * D;
          const double x1 = p(row + i), x2 = p(row + i + half);
          p(row + i) = static_cast<float>(x1 * c - x2 * s);
          p(row + i + half) = static_cast<float>(x2 * c + x1 * s);
        }
      });
}
}  // namespace kk

void KokkosBackend::rope_forward(Tensor& x, const Tensor& positions, float theta) {
  kk::rope_apply("rope_forward", x, positions, theta, +1.0);
}
void KokkosBackend::rope_backward(Tensor& dx, const Tensor& positions, float theta) {
  kk::rope_apply("rope_backward", dx, positions, theta, -1.0);
}

}  // namespace temper
