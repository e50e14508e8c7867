// Helpers shared by the whole-model tests (test_model*.cpp): random documents,
// perturbing the non-decayed parameters off their init values, the weighted
// log-prob objective and a finite-difference check of sampled elements of
// every parameter (f64 CPU decoder).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/decoder.h"

namespace temper {

inline std::vector<int32_t> random_doc(Rng& rng, int len, int vocab) {
  std::vector<int32_t> d(static_cast<size_t>(len));
  for (auto& t : d) t = int32_t(rng.below(uint64_t(vocab)));
  return d;
}

// Moves norm weights, biases and the other non-decayed parameters (lambda vectors,
// PolyNorm coefficients) off their init values so their gradients are generic.
inline void randomize_norms_and_biases(Decoder& m, uint64_t seed) {
  Rng rng(seed);
  for (auto& p : m.params()) {
    if (p.decay) continue;
    double* v = p.value.data<double>();
    for (int64_t i = 0; i < p.value.numel(); ++i) v[i] += 0.2 * rng.normal();
  }
  m.refresh_compute();
}

// sum_n r[n] * logp[n] after a forward.
inline double weighted_logp(Kernels& k, Decoder& m, const Batch& b, const std::vector<double>& r) {
  Tensor logp;
  m.forward(b, logp);
  std::vector<double> lp = to_host_f64(k, logp);
  double s = 0;
  for (size_t i = 0; i < lp.size(); ++i) s += r[i] * lp[i];
  return s;
}

// Backward of sum r * logp, then central differences on `samples` random elements of
// every parameter (indices drawn from rng); every gradient must also be non-zero.
// Returns the number of elements checked.
inline int check_every_param_fd(Kernels& k, Decoder& m, const Batch& b, const std::vector<double>& r, Rng& rng,
                                int samples = 4) {
  m.zero_grad();
  Tensor logp;
  m.forward(b, logp);
  m.backward(b, to_device(k, r, DType::F64));
  const double h = 1e-5;
  int checked = 0;
  for (auto& p : m.params()) {
    std::vector<double> g = to_host_f64(k, p.grad);
    double gnorm = 0;
    for (double x : g) gnorm += x * x;
    EXPECT_GT(gnorm, 1e-12) << p.name << " has an all-zero gradient";
    double* v = p.value.data<double>();
    for (int s = 0; s < samples; ++s) {
      const int64_t i = int64_t(rng.below(uint64_t(p.value.numel())));
      const double v0 = v[i];
      v[i] = v0 + h;
      m.refresh_compute();
      const double lp = weighted_logp(k, m, b, r);
      v[i] = v0 - h;
      m.refresh_compute();
      const double lm = weighted_logp(k, m, b, r);
      v[i] = v0;
      m.refresh_compute();
      const double fd = (lp - lm) / (2 * h);
      EXPECT_NEAR(g[size_t(i)], fd, 1e-6 * (std::fabs(fd) + std::fabs(g[size_t(i)])) + 1e-9)
          << p.name << "[" << i << "]";
      ++checked;
    }
  }
  return checked;
}

}  // namespace temper
