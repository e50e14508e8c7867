// The counter-based normal generator behind parameter initialisation
// (kernels/counter_normal.h, Kernels::fill_normal): Philox4x32-10 against the
// published known answers, the own logarithm against libm, the normal
// distribution's moments and quantiles, and values that depend only on
// (seed, stream, element): chunking, threads and the default (host + copy)
// path give the same bits.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/counter_normal.h"
#include "kernels/kernels.h"

namespace temper {
namespace {

TEST(FillNormal, Philox4x32_10KnownAnswers) {
  // Random123's known-answer vectors for philox4x32_10
  struct Kat {
    uint32_t ctr[4], key[2], out[4];
  } kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    const cnormal::U32x4 r =
        cnormal::philox4x32_10(cnormal::U32x4{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.out[i]) << "word " << i << " of ctr " << k.ctr[0];
  }
}

TEST(FillNormal, LogarithmMatchesLibm) {
  double worst = 0;
  for (double x : {1e-300, 2.2250738585072014e-308, 1e-30, 1e-5, 0.1, 0.5, 0.70710678, 0.7071067811865476, 0.75,
                   0.999999, 1.0, 1.0000001, 1.4142135623730951, 1.5, 2.0, 10.0, 1e10, 1e300}) {
    const double got = cnormal::log_positive(x), want = std::log(x);
    const double err = std::fabs(got - want) / std::max(1e-300, std::fabs(want));
    if (want != 0) worst = std::max(worst, err);
    if (want == 0) EXPECT_EQ(got, 0.0);
  }
  for (int i = 1; i < 100000; ++i) {
    const double x = i / 100000.0;
    worst = std::max(worst, std::fabs(cnormal::log_positive(x) - std::log(x)) / std::max(1e-300, std::fabs(std::log(x))));
  }
  EXPECT_LT(worst, 1e-15);  // a few ulp
}

TEST(FillNormal, StandardNormalMomentsAndQuantiles) {
  auto k = make_cpu_kernels();
  const int64_t n = 2000000;
  Tensor t = k->alloc({n}, DType::F64);
  k->fill_normal(t, 12345, 7, 1.0);
  const double* z = t.data<double>();
  double s1 = 0, s2 = 0, s4 = 0, within1 = 0, within2 = 0, above3 = 0;
  for (int64_t i = 0; i < n; ++i) {
    s1 += z[i], s2 += z[i] * z[i], s4 += z[i] * z[i] * z[i] * z[i];
    within1 += std::fabs(z[i]) < 1, within2 += std::fabs(z[i]) < 2, above3 += z[i] > 3;
  }
  const double mean = s1 / n, var = s2 / n - mean * mean;
  EXPECT_LT(std::fabs(mean), 5 / std::sqrt(double(n)));
  EXPECT_NEAR(var, 1.0, 5 * std::sqrt(2.0 / n));
  EXPECT_NEAR(s4 / n, 3.0, 0.03);                                    // kurtosis of a normal
  EXPECT_NEAR(within1 / n, 0.682689492, 5 * std::sqrt(0.22 / n));  // P(|z| < 1)
  EXPECT_NEAR(within2 / n, 0.954499736, 5 * std::sqrt(0.044 / n));
  EXPECT_NEAR(above3 / n, 0.001349898, 5 * std::sqrt(0.00135 / n));
  // neighbours (the two of a pair, and across pairs) are uncorrelated
  double c1 = 0, c2 = 0;
  for (int64_t i = 0; i + 2 < n; i += 2) c1 += z[i] * z[i + 1], c2 += z[i + 1] * z[i + 2];
  EXPECT_LT(std::fabs(c1 / (n / 2)), 5 / std::sqrt(n / 2.0));
  EXPECT_LT(std::fabs(c2 / (n / 2)), 5 / std::sqrt(n / 2.0));
}

TEST(FillNormal, ValuesDependOnSeedStreamAndIndexOnly) {
  auto k = make_cpu_kernels();
  const double std = 0.02;
  Tensor big = k->alloc({5001}, DType::F32), small = k->alloc({37, 27}, DType::F32);
  k->fill_normal(big, 99, 3, std);
  k->fill_normal(small, 99, 3, std);  // a prefix of the same stream, another shape
  EXPECT_EQ(std::memcmp(big.data<float>(), small.data<float>(), sizeof(float) * size_t(small.numel())), 0);
  // a range starting at an odd element, on the host
  std::vector<float> part(1000);
  cnormal::fill_range(part.data(), 1001, 2001, 99, 3, std);
  EXPECT_EQ(std::memcmp(big.data<float>() + 1001, part.data(), sizeof(float) * part.size()), 0);
  // one thread, and the default implementation (host buffer + copy), give the same bits
  Tensor one = k->alloc({5001}, DType::F32), dflt = k->alloc({5001}, DType::F32);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  k->fill_normal(one, 99, 3, std);
  omp_set_num_threads(threads);
  k->Kernels::fill_normal(dflt, 99, 3, std);
  EXPECT_EQ(std::memcmp(big.data<float>(), one.data<float>(), sizeof(float) * 5001), 0);
  EXPECT_EQ(std::memcmp(big.data<float>(), dflt.data<float>(), sizeof(float) * 5001), 0);
  // f32 is the f64 value rounded once
  Tensor d = k->alloc({5001}, DType::F64);
  k->fill_normal(d, 99, 3, std);
  for (int64_t i = 0; i < 5001; ++i) ASSERT_EQ(big.data<float>()[i], float(d.data<double>()[i])) << i;
  // another seed or stream: other values
  Tensor other = k->alloc({5001}, DType::F32);
  for (auto [seed, stream] : {std::pair<uint64_t, uint32_t>{100, 3}, {99, 4}, {99ull << 32, 3}}) {
    k->fill_normal(other, seed, stream, std);
    int64_t same = 0;
    for (int64_t i = 0; i < 5001; ++i) same += other.data<float>()[i] == big.data<float>()[i];
    EXPECT_LT(same, 5) << "seed " << seed << " stream " << stream;
  }
}

}  // namespace
}  // namespace temper
