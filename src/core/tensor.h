// Tensor: a shape, a dtype, a device and a (shared) buffer. Deliberately small:
// no autograd, no strides. Views share the owner's storage.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace temper {

// On-disk values (checkpoints store them): append only, never renumber.
enum class DType : uint8_t { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, I32 = 4, I64 = 5, U8 = 6 };
enum class Device : uint8_t { CPU = 0, CUDA = 1, KOKKOS = 2 };  // KOKKOS: kernels/kokkos's memory space

size_t dtype_size(DType t);
const char* dtype_name(DType t);   // "f32", "bf16", ...
DType dtype_from_name(const std::string& name);  // throws on an unknown name
const char* device_name(Device d);

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 3]"

// Device memory comes from an allocator a backend registers (CPU is built in).
using DeviceAllocator = std::function<std::shared_ptr<void>(size_t bytes)>;
void register_allocator(Device d, DeviceAllocator alloc);

class Tensor {
 public:
  Tensor() = default;
  // Allocates (uninitialised) storage on the device.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype);  // CPU only
  // Wraps memory owned elsewhere; the caller keeps it alive.
  static Tensor wrap(void* data, const Shape& shape, DType dtype, Device device = Device::CPU);
  // Owns `storage` (at least nbytes; e.g. page-locked host memory with its own deleter).
  static Tensor adopt(std::shared_ptr<void> storage, const Shape& shape, DType dtype, Device device);
  // How many tensors share this one's storage (0 for wrapped memory): a buffer
  // that only its owner still references may be reused.
  long use_count() const { return storage_.use_count(); }

  bool defined() const { return data_ != nullptr; }
  void* raw() const { return data_; }
  template <typename T> T* data() const { return static_cast<T*>(data_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  // Same storage, new shape (numel must match).
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) along the first dimension, sharing storage.
  Tensor rows(int64_t begin, int64_t end) const;

 private:
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  std::shared_ptr<void> storage_;
};

}  // namespace temper
