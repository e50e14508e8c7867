// Helpers shared by the CPU-kernel tests: random never-zero tensors, NaN
// poisoning, element access for f32/f64, and the central-difference gradient
// check used by test_kernels_cpu_grad.cpp.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"

namespace temper::test {

inline double get(const Tensor& t, int64_t i) {
  return t.dtype() == DType::F32 ? double(t.data<float>()[i]) : t.data<double>()[i];
}

inline void set(Tensor& t, int64_t i, double v) {
  if (t.dtype() == DType::F32)
    t.data<float>()[i] = static_cast<float>(v);
  else
    t.data<double>()[i] = v;
}

// Uniform magnitudes in [lo, hi] with a random sign: never zero.
inline Tensor rand_tensor(const Shape& s, DType dt, Rng& rng, double lo = 0.1, double hi = 1.0) {
  Tensor t = Tensor::empty(s, dt);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double mag = lo + (hi - lo) * rng.uniform();
    set(t, i, rng.uniform() < 0.5 ? -mag : mag);
  }
  return t;
}

// Filled with NaN, to catch elements an op forgets to write.
inline Tensor poisoned(const Shape& s, DType dt) {
  Tensor t = Tensor::empty(s, dt);
  for (int64_t i = 0; i < t.numel(); ++i) set(t, i, std::numeric_limits<double>::quiet_NaN());
  return t;
}

inline Tensor i32(const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::I32);
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * sizeof(int32_t));
  return t;
}

inline Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  std::memcpy(c.raw(), t.raw(), t.nbytes());
  return c;
}

// Same values in another float dtype.
inline Tensor as_dtype(const Tensor& t, DType dt) {
  Tensor c = Tensor::empty(t.shape(), dt);
  for (int64_t i = 0; i < t.numel(); ++i) set(c, i, get(t, i));
  return c;
}

// sum_i R_i * out_i: a scalar objective in which every output element matters.
inline double weighted_sum(const Tensor& R, const Tensor& out) {
  double s = 0.0;
  for (int64_t i = 0; i < out.numel(); ++i) s += get(R, i) * get(out, i);
  return s;
}

inline void expect_finite(const Tensor& t, const char* what) {
  for (int64_t i = 0; i < t.numel(); ++i) ASSERT_TRUE(std::isfinite(get(t, i))) << what << "[" << i << "]";
}

// a[i] - b[i] for accumulated gradients (after minus before).
inline Tensor diff(const Tensor& a, const Tensor& b) {
  Tensor d = Tensor::empty(a.shape(), a.dtype());
  for (int64_t i = 0; i < a.numel(); ++i) set(d, i, get(a, i) - get(b, i));
  return d;
}

// Largest |a - b| / max(|b|, floor) over all elements.
inline double max_rel_err(const Tensor& a, const Tensor& b, double floor = 1e-3) {
  EXPECT_EQ(a.numel(), b.numel());
  double worst = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = get(a, i), y = get(b, i);
    const double e = std::fabs(x - y) / std::max(std::fabs(y), floor);
    if (!(e <= worst)) worst = e;  // NaN propagates as "worst"
  }
  return worst;
}

// Central differences on every element of `param` (f64): perturbs it by ±h,
// evaluates `objective`, and compares to the analytic gradient `grad`.
inline void check_grad(const char* what, Tensor& param, const Tensor& grad, const std::function<double()>& objective,
                       double h = 1e-5, double tol = 1e-6) {
  ASSERT_EQ(param.dtype(), DType::F64) << what;
  ASSERT_EQ(param.numel(), grad.numel()) << what;
  double worst = 0.0;
  for (int64_t i = 0; i < param.numel(); ++i) {
    const double x0 = get(param, i);
    set(param, i, x0 + h);
    const double fp = objective();
    set(param, i, x0 - h);
    const double fm = objective();
    set(param, i, x0);
    const double num = (fp - fm) / (2 * h), ana = get(grad, i);
    const double err = std::fabs(num - ana) / std::max(std::fabs(num) + std::fabs(ana), 1e-4);
    EXPECT_LT(err, tol) << what << "[" << i << "]: analytic " << ana << " vs numeric " << num;
    worst = std::max(worst, err);
  }
  EXPECT_LT(worst, tol) << what;
}

}  // namespace temper::test
