// Kokkos backend: the AdamW update (bias-corrected, decoupled weight decay) in
// double, stored back in f32, and the sum of squares (a double reduction).
#include <cmath>

#include "kernels/adamw_bias_correction.h"
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

void KokkosBackend::adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) {
  const char* op = "adamw_step";
  kk::check(op, DType::F32, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  check_shape(op, "grad", grad, param.shape());
  check_shape(op, "m", m, param.shape());
  check_shape(op, "v", v, param.shape());
  const AdamWBiasCorrection bc = adamw_bias_correction(op, p);
  const double bc1 = bc.bc1, bc2 = bc.bc2;
  const double b1 = p.beta1, b2 = p.beta2;
  const double lr = p.lr, eps = p.eps, wd = p.weight_decay, gs = p.grad_scale;
  auto w = kk::view<float>(param);
  auto g = kk::cview<float>(grad);
  auto mm = kk::view<float>(m);
  auto vv = kk::view<float>(v);
  Kokkos::parallel_for(
      "temper::adamw_step", kk::Range(0, param.numel()), KOKKOS_LAMBDA(const int64_t i) {
        const double gi = gs * double(g(i));
        const double mi = b1 * double(mm(i)) + (1.0 - b1) * gi;
        const double vi = b2 * double(vv(i)) + (1.0 - b2) * gi * gi;
        mm(i) = static_cast<float>(mi);
        vv(i) = static_cast<float>(vi);
        const double upd = (mi / bc1) / (kk::math::sqrt(vi / bc2) + eps) + wd * double(w(i));
        w(i) = static_cast<float>(double(w(i)) - lr * upd);
      });
}

double KokkosBackend::sum_squares(const Tensor& x) {
  TEMPER_CHECK(x.device() == Device::KOKKOS, "sum_squares: 'x' is on ", device_name(x.device()),
               ", expected a kokkos tensor");
  const int64_t n = x.numel();
  double acc = 0.0;
  if (x.dtype() == DType::F32) {
    auto a = kk::cview<float>(x);
    Kokkos::parallel_reduce(
        "temper::sum_squares", kk::Range(0, n),
        KOKKOS_LAMBDA(const int64_t i, double& s) { s += double(a(i)) * double(a(i)); }, acc);
  } else if (x.dtype() == DType::F64) {
    auto a = kk::cview<double>(x);
    Kokkos::parallel_reduce(
        "temper::sum_squares", kk::Range(0, n), KOKKOS_LAMBDA(const int64_t i, double& s) { s += a(i) * a(i); },
        acc);
  } else {
    fail("sum_squares: tensor of dtype ", dtype_name(x.dtype()), " (shape ", shape_str(x.shape()),
         "); the kokkos backend sums f32 or f64");
  }
  return acc;  // a reduction into a host scalar is complete on return
}

}  // namespace temper
