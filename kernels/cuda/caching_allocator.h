// CachingAllocator: device memory for Device::CUDA tensors. Blocks are rounded
// up to size buckets (powers of two up to 1 MiB, then multiples of 2 MiB) and
// returned to a per-bucket free list when their tensor dies, so the steady-state
// training step never calls cudaMalloc/cudaFree. On out-of-memory the cache is
// released and the allocation retried once.
//
// Reuse is safe as long as all work runs in stream order on one stream (the
// backend's); a block freed on the host may still be read by queued kernels,
// and the next user of the block is queued after them.
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace temper::cuda {

class CachingAllocator : public std::enable_shared_from_this<CachingAllocator> {
 public:
  explicit CachingAllocator(int device);
  ~CachingAllocator();  // frees the cached blocks (errors at process exit are ignored)
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes`; the deleter returns it to the cache.
  std::shared_ptr<void> allocate(size_t bytes);
  // Gives every cached (unused) block back to the driver.
  void release_cached();

  static size_t bucket_size(size_t bytes);

  struct Stats {
    size_t in_use_bytes = 0, cached_bytes = 0, device_mallocs = 0;
  };
  Stats stats() const;

 private:
  void give_back(void* p, size_t bucket) noexcept;

  int device_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // bucket size -> cached blocks
  Stats stats_;
};

}  // namespace temper::cuda
