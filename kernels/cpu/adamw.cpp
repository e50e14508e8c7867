// CPU backend: the AdamW update (bias-corrected, decoupled weight decay) and
// the sum of squares used for gradient-norm clipping. Both are computed in
// double and stored back in the tensors' dtype (f32, or f64 on the f64 path).
//   g' = grad_scale * g
//   m = b1 m + (1 - b1) g',  v = b2 v + (1 - b2) g'^2
//   mhat = m / (1 - b1^t),  vhat = v / (1 - b2^t)
//   p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p)
#include <cmath>

#include "core/bf16.h"
#include "kernels/adamw_bias_correction.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

void CpuKernels::adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) {
  const char* op = "adamw_step";
  DType dt = cpu::common_float_dtype(op, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  cpu::check_shape(op, "grad", grad, param.shape());
  cpu::check_shape(op, "m", m, param.shape());
  cpu::check_shape(op, "v", v, param.shape());
  const AdamWBiasCorrection bc = adamw_bias_correction(op, p);
  const double bc1 = bc.bc1, bc2 = bc.bc2;
  const double b1 = p.beta1, b2 = p.beta2;
  const double lr = p.lr, eps = p.eps, wd = p.weight_decay, gs = p.grad_scale;
  const int64_t n = param.numel();
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* w = param.data<T>();
    const T* g = grad.data<T>();
    T* mm = m.data<T>();
    T* vv = v.data<T>();
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; ++i) {
      const double gi = gs * double(g[i]);
      const double mi = b1 * double(mm[i]) + (1.0 - b1) * gi;
      const double vi = b2 * double(vv[i]) + (1.0 - b2) * gi * gi;
      mm[i] = static_cast<T>(mi);
      vv[i] = static_cast<T>(vi);
      const double upd = (mi / bc1) / (std::sqrt(vi / bc2) + eps) + wd * double(w[i]);
      w[i] = static_cast<T>(double(w[i]) - lr * upd);
    }
  });
}

double CpuKernels::sum_squares(const Tensor& x) {
  cpu::check_on_cpu("sum_squares", {{"x", &x}});
  const int64_t n = x.numel();
  double acc = 0.0;
  switch (x.dtype()) {
    case DType::F32: {
      const float* a = x.data<float>();
#pragma omp parallel for reduction(+ : acc) schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) acc += double(a[i]) * double(a[i]);
      break;
    }
    case DType::F64: {
      const double* a = x.data<double>();
#pragma omp parallel for reduction(+ : acc) schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) acc += a[i] * a[i];
      break;
    }
    case DType::BF16: {
      const uint16_t* a = x.data<uint16_t>();
#pragma omp parallel for reduction(+ : acc) schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) {
        const double f = bf16_to_float(a[i]);
        acc += f * f;
      }
      break;
    }
    default:
      fail("sum_squares: tensor of dtype ", dtype_name(x.dtype()), " (shape ", shape_str(x.shape()),
           "); expected f32, f64 or bf16");
  }
  return acc;
}

}  // namespace temper
