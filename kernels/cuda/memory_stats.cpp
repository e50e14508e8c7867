// CUDA backend: memory figures of the caching allocator for benchmarks and the
// memory plan (src/model/memory_plan.h compares its estimate with these).
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

size_t CudaKernels::in_use_bytes() const { return pool_->stats().in_use_bytes; }

size_t CudaKernels::reserved_bytes() const {
  const cuda::CachingAllocator::Stats s = pool_->stats();
  return s.in_use_bytes + s.cached_bytes;
}

}  // namespace temper
