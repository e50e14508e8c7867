// CPU backend: allocation, zeroing, copies with f32/f64/bf16 conversion, the
// strided head-block copy (copy_heads), and the factory make_cpu_kernels().
#include <cstring>

#include "core/bf16.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

std::unique_ptr<Kernels> make_cpu_kernels() { return std::make_unique<CpuKernels>(); }

Tensor CpuKernels::alloc(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype, Device::CPU); }

void CpuKernels::zero(Tensor& t) {
  cpu::check_on_cpu("zero", {{"t", &t}});
  std::memset(t.raw(), 0, t.nbytes());
}

namespace {

// Reads element i of a float-like buffer as double.
double load(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::BF16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    default: fail("copy: internal error, load from ", dtype_name(dt));
  }
}

// Writes element i, rounding to the destination dtype (bf16: nearest even).
void store(void* p, DType dt, int64_t i, double x) {
  switch (dt) {
    case DType::F32: static_cast<float*>(p)[i] = static_cast<float>(x); return;
    case DType::F64: static_cast<double*>(p)[i] = x; return;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = float_to_bf16(static_cast<float>(x)); return;
    default: fail("copy: internal error, store to ", dtype_name(dt));
  }
}

bool is_convertible(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::BF16; }

}  // namespace

void CpuKernels::copy(Tensor& dst, const Tensor& src) {
  cpu::check_on_cpu("copy", {{"dst", &dst}, {"src", &src}});
  TEMPER_CHECK(dst.numel() == src.numel(), "copy: dst has shape ", shape_str(dst.shape()), " but src has ",
               shape_str(src.shape()), " (element counts differ)");
  if (dst.dtype() == src.dtype()) {
    if (dst.raw() != src.raw()) std::memmove(dst.raw(), src.raw(), src.nbytes());
    return;
  }
  TEMPER_CHECK(is_convertible(dst.dtype()) && is_convertible(src.dtype()), "copy: cannot convert ",
               dtype_name(src.dtype()), " to ", dtype_name(dst.dtype()),
               " (the cpu backend converts between f32, f64 and bf16 only)");
  // Double holds every f32 and bf16 value exactly, so going through it
  // rounds only at the destination (f64 -> bf16 rounds to f32 first, then to
  // bf16 nearest-even, as the CUDA side does from an f32 master).
  const int64_t n = src.numel();
  const DType sd = src.dtype(), dd = dst.dtype();
  const void* s = src.raw();
  void* d = dst.raw();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) store(d, dd, i, load(s, sd, i));
}

void CpuKernels::copy_heads(Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head, int64_t count,
                            bool accumulate) {
  const char* op = "copy_heads";
  cpu::check_on_cpu(op, {{"dst", &dst}, {"src", &src}});
  check_copy_heads(dst, dst_head, src, src_head, count);
  const int64_t N = dst.dim(0), Hd = dst.dim(1), Hs = src.dim(1), D = dst.dim(2), w = count * D;
  if (N == 0 || w == 0) return;
  if (!accumulate) {
    const size_t es = dtype_size(dst.dtype());
    char* d = static_cast<char*>(dst.raw()) + size_t(dst_head * D) * es;
    const char* s = static_cast<const char*>(src.raw()) + size_t(src_head * D) * es;
#pragma omp parallel for schedule(static) if (N * w > 65536)
    for (int64_t t = 0; t < N; ++t) std::memcpy(d + size_t(t * Hd * D) * es, s + size_t(t * Hs * D) * es, size_t(w) * es);
    return;
  }
  const DType dt = cpu::common_float_dtype(op, {{"dst", &dst}, {"src", &src}});
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.data<T>() + dst_head * D;
    const T* s = src.data<T>() + src_head * D;
#pragma omp parallel for schedule(static) if (N * w > 65536)
    for (int64_t t = 0; t < N; ++t)
      for (int64_t i = 0; i < w; ++i) d[t * Hd * D + i] += s[t * Hs * D + i];
  });
}

}  // namespace temper
