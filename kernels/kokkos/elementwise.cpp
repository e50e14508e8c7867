// Kokkos backend: elementwise y += x, y *= s and y = a y + b x (f32; axpby
// computes in double as the CPU reference does).
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace {
void same_numel(const char* op, const Tensor& y, const Tensor& x) {
  kk::check(op, DType::F32, {{"y", &y}, {"x", &x}});
  TEMPER_CHECK(y.numel() == x.numel(), op, ": 'y' has shape ", shape_str(y.shape()), " but 'x' has ",
               shape_str(x.shape()));
}
}  // namespace

void KokkosBackend::add_inplace(Tensor& y, const Tensor& x) {
  same_numel("add_inplace", y, x);
  auto a = kk::view<float>(y);
  auto b = kk::cview<float>(x);
  Kokkos::parallel_for("temper::add_inplace", kk::Range(0, y.numel()), KOKKOS_LAMBDA(const int64_t i) { a(i) += b(i); });
}

void KokkosBackend::scale_inplace(Tensor& y, float s) {
  kk::check("scale_inplace", DType::F32, {{"y", &y}});
  auto a = kk::view<float>(y);
  Kokkos::parallel_for("temper::scale_inplace", kk::Range(0, y.numel()), KOKKOS_LAMBDA(const int64_t i) { a(i) *= s; });
}

void KokkosBackend::axpby(Tensor& y, double a, const Tensor& x, double b) {
  same_numel("axpby", y, x);
  auto py = kk::view<float>(y);
  auto px = kk::cview<float>(x);
  const bool drop_y = a == 0.0;  // a == 0 ignores y's old contents (NaN included)
  Kokkos::parallel_for(
      "temper::axpby", kk::Range(0, y.numel()), KOKKOS_LAMBDA(const int64_t i) {
        const double old = drop_y ? 0.0 : a * double(py(i));
        py(i) = static_cast<float>(old + b * double(px(i)));
      });
}

}  // namespace temper
