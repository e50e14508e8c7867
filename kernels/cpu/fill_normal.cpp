// CPU backend: fill_normal (kernels.h), in place, chunks of the counter-based
// generator (kernels/counter_normal.h) on all threads.
#include <algorithm>

#include "kernels/cpu/cpu_kernels.h"

namespace temper {

void CpuKernels::fill_normal(Tensor& t, uint64_t seed, uint32_t stream, double std) {
  TEMPER_CHECK(t.device() == Device::CPU, "fill_normal: tensor is not on the cpu");
  TEMPER_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "fill_normal: f32 or f64 tensor expected, got ",
               dtype_name(t.dtype()));
  const int64_t n = t.numel(), chunk = int64_t(1) << 16;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c) {
    const int64_t b = c * chunk, e = std::min(n, b + chunk);
    if (t.dtype() == DType::F64) cnormal::fill_range(t.data<double>() + b, b, e, seed, stream, std);
    else cnormal::fill_range(t.data<float>() + b, b, e, seed, stream, std);
  }
}

}  // namespace temper
