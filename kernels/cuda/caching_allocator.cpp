// CachingAllocator: size-bucketed free lists over cudaMalloc (see the header).
#include "kernels/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include "core/error.h"

namespace temper::cuda {

CachingAllocator::CachingAllocator(int device) : device_(device) {}

CachingAllocator::~CachingAllocator() {
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) (void)cudaFree(p);  // may fail harmlessly at process exit
}

size_t CachingAllocator::bucket_size(size_t bytes) {
  constexpr size_t kMin = 512, kSmall = size_t(1) << 20, kLargeStep = size_t(2) << 20;
  if (bytes <= kMin) return kMin;
  if (bytes <= kSmall) {
    size_t b = kMin;
    while (b < bytes) b <<= 1;
    return b;
  }
  return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
}

std::shared_ptr<void> CachingAllocator::allocate(size_t bytes) {
  const size_t bucket = bucket_size(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(bucket);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.cached_bytes -= bucket;
    }
  }
  if (!p) {
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != device_) {
      cudaError_t e = cudaSetDevice(device_);
      if (e != cudaSuccess) fail("cuda allocator: cudaSetDevice(", device_, ") failed: ", cudaGetErrorString(e));
    }
    cudaError_t err = cudaMalloc(&p, bucket);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the sticky-free error before retrying
      release_cached();
      err = cudaMalloc(&p, bucket);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      Stats s = stats();
      fail("cuda allocator: cudaMalloc of ", bucket, " bytes (", bytes, " requested) on device ", device_,
           " failed: ", cudaGetErrorString(err), "; ", s.in_use_bytes >> 20,
           " MiB are in use by tensors. Reduce the micro-batch size or sequence length, or enable activation "
           "checkpointing.");
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.device_mallocs;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.in_use_bytes += bucket;
  }
  std::shared_ptr<CachingAllocator> self = shared_from_this();
  return std::shared_ptr<void>(p, [self, bucket](void* q) { self->give_back(q, bucket); });
}

void CachingAllocator::give_back(void* p, size_t bucket) noexcept {
  try {
    std::lock_guard<std::mutex> lock(mu_);
    free_[bucket].push_back(p);
    stats_.in_use_bytes -= bucket;
    stats_.cached_bytes += bucket;
  } catch (...) {
    (void)cudaFree(p);  // the free list could not grow: hand the block back instead
  }
}

void CachingAllocator::release_cached() {
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocks.swap(free_);
    stats_.cached_bytes = 0;
  }
  // Cached blocks may still be read by queued kernels: wait before freeing.
  (void)cudaDeviceSynchronize();
  for (auto& [size, list] : blocks)
    for (void* p : list) (void)cudaFree(p);
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace temper::cuda
