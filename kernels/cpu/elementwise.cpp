// CPU backend: elementwise y += x, y *= s and y = a y + b x.
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {
// y and x of one float dtype and one element count; returns the dtype.
DType same_float_numel(const char* op, const Tensor& y, const Tensor& x) {
  DType dt = cpu::common_float_dtype(op, {{"y", &y}, {"x", &x}});
  TEMPER_CHECK(y.numel() == x.numel(), op, ": 'y' has shape ", shape_str(y.shape()), " but 'x' has ",
               shape_str(x.shape()));
  return dt;
}
}  // namespace

void CpuKernels::add_inplace(Tensor& y, const Tensor& x) {
  const char* op = "add_inplace";
  DType dt = same_float_numel(op, y, x);
  const int64_t n = y.numel();
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* a = y.data<T>();
    const T* b = x.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) a[i] += b[i];
  });
}

void CpuKernels::scale_inplace(Tensor& y, float s) {
  DType dt = cpu::common_float_dtype("scale_inplace", {{"y", &y}});
  const int64_t n = y.numel();
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* a = y.data<T>();
    const T k = static_cast<T>(s);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) a[i] *= k;
  });
}

void CpuKernels::axpby(Tensor& y, double a, const Tensor& x, double b) {
  const char* op = "axpby";
  DType dt = same_float_numel(op, y, x);
  const int64_t n = y.numel();
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* py = y.data<T>();
    const T* px = x.data<T>();
    if (a == 0.0) {
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) py[i] = static_cast<T>(b * double(px[i]));
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) py[i] = static_cast<T>(a * double(py[i]) + b * double(px[i]));
    }
  });
}

}  // namespace temper
