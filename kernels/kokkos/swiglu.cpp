// Kokkos backend: SwiGLU on a fused gate|up tensor gu[N, 2F]:
//   out = silu(g) * u,  dg = dout * u * sig(g) * (1 + g (1 - sig(g))),  du = dout * silu(g)
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace {
int64_t swiglu_width(const char* op, const Tensor& gu, const Tensor& half, const char* half_name) {
  TEMPER_CHECK(gu.ndim() >= 1 && gu.dim(-1) % 2 == 0, op, ": 'gu' must be [..., 2F], got ", shape_str(gu.shape()));
  Shape want = gu.shape();
  want.back() /= 2;
  check_shape(op, half_name, half, want);
  return want.back();
}
}  // namespace

void KokkosBackend::swiglu_forward(Tensor& out, const Tensor& gu) {
  const char* op = "swiglu_forward";
  kk::check(op, DType::F32, {{"out", &out}, {"gu", &gu}});
  const int64_t F = swiglu_width(op, gu, out, "out");
  if (F == 0) return;
  auto in = kk::cview<float>(gu);
  auto o = kk::view<float>(out);
  Kokkos::parallel_for(
      "temper::swiglu_forward", kk::Range(0, out.numel()), KOKKOS_LAMBDA(const int64_t i) {
        const int64_t r = i / F, f = i % F;
        const double g = in(r * 2 * F + f), u = in(r * 2 * F + F + f);
        o(i) = static_cast<float>(g / (1.0 + kk::math::exp(-g)) * u);
      });
}

void KokkosBackend::swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) {
  const char* op = "swiglu_backward";
  kk::check(op, DType::F32, {{"dgu", &dgu}, {"dout", &dout}, {"gu", &gu}});
  const int64_t F = swiglu_width(op, gu, dout, "dout");
  check_shape(op, "dgu", dgu, gu.shape());
  if (F == 0) return;
  auto in = kk::cview<float>(gu);
  auto go = kk::cview<float>(dout);
  auto d = kk::view<float>(dgu);
  Kokkos::parallel_for(
      "temper::swiglu_backward", kk::Range(0, dout.numel()), KOKKOS_LAMBDA(const int64_t i) {
        const int64_t r = i / F, f = i % F;
        const double g = in(r * 2 * F + f), u = in(r * 2 * F + F + f), dy = go(i);
        const double sg = 1.0 / (1.0 + kk::math::exp(-g));
        d(r * 2 * F + f) = static_cast<float>(dy * u * sg * (1.0 + g * (1.0 - sg)));
        d(r * 2 * F + F + f) = static_cast<float>(dy * g * sg);
      });
}

}  // namespace temper
