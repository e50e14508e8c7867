// Kokkos backend: Kokkos start-up, the Device::KOKKOS allocator, zeroing, copies
// between any pair of devices (Kokkos::deep_copy across memory spaces; dtype
// conversion on the device, or on the host side of a transfer), argument checks
// and the factory.
#include <mutex>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace kk {

void check(const char* op, DType dt, std::initializer_list<NamedTensor> ts) {
  for (const auto& [name, t] : ts) {
    TEMPER_CHECK(t->device() == Device::KOKKOS, op, ": '", name, "' is on ", device_name(t->device()),
                 ", expected a kokkos tensor (allocate it with the kokkos backend)");
    TEMPER_CHECK(t->dtype() == dt, op, ": '", name, "' is ", dtype_name(t->dtype()), " ", shape_str(t->shape()),
                 ", expected ", dtype_name(dt));
  }
}

void check_i32(const char* op, const char* name, const Tensor& t, int64_t n) {
  check(op, DType::I32, {{name, &t}});
  TEMPER_CHECK(t.numel() == n, op, ": '", name, "' has ", t.numel(), " elements, expected ", n);
}

void check_index_range(const char* op, const char* name, const Tensor& t, int64_t lo, int64_t hi) {
  const Vec<const int32_t> v = cview<int32_t>(t);
  int64_t bad = 0;
  Kokkos::parallel_reduce(
      "temper::check_index_range", Range(0, t.numel()),
      KOKKOS_LAMBDA(const int64_t i, int64_t& acc) { acc += (v(i) < lo || v(i) >= hi) ? 1 : 0; }, bad);
  TEMPER_CHECK(bad == 0, op, ": ", bad, " of the ", t.numel(), " entries of '", name, "' lie outside [", lo, ", ",
               hi, ")");
}

}  // namespace kk

namespace {

std::once_flag g_init;

void init_kokkos() {
  std::call_once(g_init, [] {
    if (!Kokkos::is_initialized()) {
      int argc = 1;
      char prog[] = "temper";
      char* argv[] = {prog, nullptr};
      Kokkos::initialize(argc, argv);
    }
    register_allocator(Device::KOKKOS, [](size_t bytes) -> std::shared_ptr<void> {
      void* p = Kokkos::kokkos_malloc<kk::Mem>("temper", bytes ? bytes : 64);
      TEMPER_CHECK(p, "kokkos: out of memory allocating ", bytes, " bytes in ", kk::Mem::name());
      return std::shared_ptr<void>(p, [](void* q) { Kokkos::kokkos_free<kk::Mem>(q); });
    });
  });
}

// Element access by dtype, usable on the device (bf16: round to nearest even).
union Bits {
  uint32_t u;
  float f;
};
KOKKOS_INLINE_FUNCTION double load(const void* p, DType dt, int64_t i) {
  if (dt == DType::F32) return static_cast<const float*>(p)[i];
  if (dt == DType::F64) return static_cast<const double*>(p)[i];
  Bits b;
  b.u = uint32_t(static_cast<const uint16_t*>(p)[i]) << 16;
  return b.f;
}
KOKKOS_INLINE_FUNCTION void store(void* p, DType dt, int64_t i, double x) {
  if (dt == DType::F32) {
    static_cast<float*>(p)[i] = static_cast<float>(x);
  } else if (dt == DType::F64) {
    static_cast<double*>(p)[i] = x;
  } else {
    Bits b;
    b.f = static_cast<float>(x);
    uint32_t u = b.u;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      u = (u >> 16) | 0x40u;  // NaN stays NaN
    } else {
      u = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    }
    static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(u);
  }
}

bool convertible(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::BF16; }

Kernels& host_kernels() {
  static std::unique_ptr<Kernels> cpu = make_cpu_kernels();
  return *cpu;
}

// Same-dtype byte copy between any two of host / kokkos memory.
void copy_bytes(Tensor& dst, const Tensor& src) {
  const size_t n = src.nbytes();
  if (n == 0 || dst.raw() == src.raw()) return;
  auto* d = static_cast<unsigned char*>(dst.raw());
  const auto* s = static_cast<const unsigned char*>(src.raw());
  const bool dh = dst.device() == Device::CPU, sh = src.device() == Device::CPU;
  if (dh && sh) {
    Kokkos::deep_copy(kk::HostVec<unsigned char>(d, n), kk::HostVec<const unsigned char>(s, n));
  } else if (dh) {
    Kokkos::deep_copy(kk::HostVec<unsigned char>(d, n), kk::Vec<const unsigned char>(s, n));
  } else if (sh) {
    Kokkos::deep_copy(kk::Vec<unsigned char>(d, n), kk::HostVec<const unsigned char>(s, n));
  } else {
    Kokkos::deep_copy(kk::Vec<unsigned char>(d, n), kk::Vec<const unsigned char>(s, n));
  }
}

}  // namespace

std::unique_ptr<Kernels> make_kokkos_kernels() {
  init_kokkos();
  return std::make_unique<KokkosBackend>();
}

std::string kokkos_execution_space() { return kk::Exec::name(); }

void KokkosBackend::synchronize() { Kokkos::fence(); }

Tensor KokkosBackend::alloc(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype, Device::KOKKOS); }

void KokkosBackend::zero(Tensor& t) {
  TEMPER_CHECK(t.device() == Device::KOKKOS, "zero: 't' is on ", device_name(t.device()),
               ", expected a kokkos tensor");
  if (t.nbytes() == 0) return;
  Kokkos::deep_copy(kk::Vec<unsigned char>(static_cast<unsigned char*>(t.raw()), t.nbytes()), 0);
}

void KokkosBackend::copy(Tensor& dst, const Tensor& src) {
  const char* op = "copy";
  for (const auto& [name, t] : {kk::NamedTensor{"dst", &dst}, kk::NamedTensor{"src", &src}})
    TEMPER_CHECK(t->device() == Device::CPU || t->device() == Device::KOKKOS, op, ": '", name, "' is on ",
                 device_name(t->device()), "; the kokkos backend copies between cpu and kokkos tensors");
  TEMPER_CHECK(dst.numel() == src.numel(), op, ": dst has shape ", shape_str(dst.shape()), " but src has ",
               shape_str(src.shape()), " (element counts differ)");
  if (dst.dtype() == src.dtype()) return copy_bytes(dst, src);
  TEMPER_CHECK(convertible(dst.dtype()) && convertible(src.dtype()), op, ": cannot convert ",
               dtype_name(src.dtype()), " to ", dtype_name(dst.dtype()),
               " (the kokkos backend converts between f32, f64 and bf16 only)");
  const bool dh = dst.device() == Device::CPU, sh = src.device() == Device::CPU;
  if (dh && sh) return host_kernels().copy(dst, src);
  if (sh) {  // convert on the host, then transfer
    Tensor staged = Tensor::empty(dst.shape(), dst.dtype(), Device::CPU);
    host_kernels().copy(staged, src);
    return copy_bytes(dst, staged);
  }
  if (dh) {  // transfer, then convert on the host
    Tensor staged = Tensor::empty(src.shape(), src.dtype(), Device::CPU);
    copy_bytes(staged, src);
    return host_kernels().copy(dst, staged);
  }
  const DType sd = src.dtype(), dd = dst.dtype();
  const void* s = src.raw();
  void* d = dst.raw();
  Kokkos::parallel_for(
      "temper::copy_convert", kk::Range(0, src.numel()),
      KOKKOS_LAMBDA(const int64_t i) { store(d, dd, i, load(s, sd, i)); });
  Kokkos::fence();
}

}  // namespace temper
