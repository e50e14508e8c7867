// Helpers for the GPU kernel tests: one shared CUDA backend per test binary
// (or none, and every test skips), bf16-representable random host tensors so
// the f32 CPU oracle sees exactly what the GPU sees, device upload/download,
// NaN-poisoned device outputs and a tolerance check atol + rtol * |ref| that
// reports the worst element.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <string>
#include <limits>
#include <memory>
#include <vector>

#include "core/bf16.h"
#include "core/rng.h"
#include "kernels/kernels.h"

namespace temper::gpu_test {

// The CUDA backend, created on first use; null when there is no GPU (the
// reason is printed once).
inline Kernels* cuda_backend() {
  static std::unique_ptr<Kernels> backend;
  static bool tried = false;
  if (!tried) {
    tried = true;
    try {
      backend = make_cuda_kernels(0);
    } catch (const Error& e) {
      std::printf("GPU tests skipped: no CUDA device (%s)\n", e.what());
    }
  }
  return backend.get();
}

#define TEMPER_REQUIRE_GPU()                                                                      \
  do {                                                                                            \
    if (!::temper::gpu_test::cuda_backend()) GTEST_SKIP() << "GPU tests skipped: no CUDA device"; \
  } while (0)

inline float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

// f32 host tensor, magnitudes uniform in [lo, hi] with random sign (never
// zero), rounded to bf16 values.
inline Tensor host_rand(const Shape& s, Rng& rng, double lo = 0.1, double hi = 1.0) {
  Tensor t = Tensor::empty(s, DType::F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double mag = lo + (hi - lo) * rng.uniform();
    p[i] = round_bf16(static_cast<float>(rng.uniform() < 0.5 ? -mag : mag));
  }
  return t;
}

inline Tensor host_i32(const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::I32);
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * sizeof(int32_t));
  return t;
}

inline Tensor host_clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  std::memcpy(c.raw(), t.raw(), t.nbytes());
  return c;
}

// Host tensor -> new device tensor of dtype dt (converted by the backend).
inline Tensor to_dev(Kernels& g, const Tensor& host, DType dt) {
  Tensor d = g.alloc(host.shape(), dt);
  g.copy(d, host);
  return d;
}

// Device tensor -> new host f32 tensor.
inline Tensor to_host(Kernels& g, const Tensor& dev) {
  Tensor h = Tensor::empty(dev.shape(), dev.dtype() == DType::I32 ? DType::I32 : DType::F32);
  g.copy(h, dev);
  g.synchronize();
  return h;
}

// A device tensor filled with NaN, to catch elements an op forgets to write.
inline Tensor poisoned(Kernels& g, const Shape& s, DType dt) {
  Tensor h = Tensor::empty(s, DType::F32);
  for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
  return to_dev(g, h, dt);
}

// Every element within atol + rtol * |ref| (NaN never is); on failure names
// the count and the worst element.
inline void expect_close(const Tensor& got, const Tensor& ref, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.numel(), ref.numel()) << what;
  const float* a = got.data<float>();
  const float* b = ref.data<float>();
  int64_t bad = 0, worst = -1;
  double worst_excess = -1.0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double tol = atol + rtol * std::fabs(double(b[i]));
    const double err = std::fabs(double(a[i]) - double(b[i]));
    const bool ok = std::isfinite(a[i]) && err <= tol;
    if (!ok) ++bad;
    const double excess = std::isfinite(err) ? err - tol : std::numeric_limits<double>::infinity();
    if (!ok && excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.numel() << " elements outside atol " << atol << " + rtol "
                    << rtol << " * |ref|; worst at [" << worst << "]: got " << (worst >= 0 ? a[worst] : 0.0f)
                    << ", expected " << (worst >= 0 ? b[worst] : 0.0f);
}

// Largest |x| of a host f32 tensor (for scale-aware tolerances).
inline double max_abs(const Tensor& t) {
  double m = 0.0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(double(t.data<float>()[i])));
  return m;
}

// Tolerance scaled to the reference's magnitude (cancellation-prone bf16 outputs).
inline void expect_close_scaled(const Tensor& got, const Tensor& ref, double rtol, const std::string& what) {
  expect_close(got, ref, 1e-2 * std::max(max_abs(ref), 1e-3), rtol, what);
}

// Compares the increments (after - before) of an accumulated gradient.
inline void expect_close_delta(const Tensor& got, const Tensor& ref, const Tensor& before, double rtol,
                               const std::string& what) {
  Tensor dg = host_clone(got), dr = host_clone(ref);
  for (int64_t i = 0; i < before.numel(); ++i) {
    dg.data<float>()[i] -= before.data<float>()[i];
    dr.data<float>()[i] -= before.data<float>()[i];
  }
  expect_close(dg, dr, 1e-2 * std::max(max_abs(dr), 1e-6), rtol, what);
}

// The fixture of the op tests: the shared CUDA backend `g` (the test skips without a GPU), the
// CPU oracle `cpu`, a random source seeded per test file and upload/download helpers.
class CudaVsCpuTest : public ::testing::Test {
 protected:
  explicit CudaVsCpuTest(uint64_t seed) : rng(seed) {}
  void SetUp() override {
    TEMPER_REQUIRE_GPU();
    g = cuda_backend();
  }
  Tensor bf(const Tensor& h) { return to_dev(*g, h, DType::BF16); }
  Tensor f32(const Tensor& h) { return to_dev(*g, h, DType::F32); }
  Tensor i32(const std::vector<int32_t>& v) { return to_dev(*g, host_i32(v), DType::I32); }
  Tensor host(const Tensor& d) { return to_host(*g, d); }
  Tensor rand(const Shape& s) { return host_rand(s, rng); }

  Kernels* g = nullptr;
  std::unique_ptr<Kernels> cpu = make_cpu_kernels();
  Rng rng;
};

}  // namespace temper::gpu_test
