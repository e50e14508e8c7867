// Counter-based normal random numbers for parameter initialisation, the same bits
// on the host and on any device (kernels.h fill_normal).
//
// Element i of stream s under seed k is a pure function of (k, s, i): no state,
// no order, so every backend, every thread layout and every mesh produces the
// same tensor. Bits: Philox4x32-10 (Salmon et al., SC'11) of the counter
// (i / 2, s, attempt) under the key k. Normals: Marsaglia's polar method, two per
// accepted pair of uniforms (elements 2j and 2j + 1), rejected pairs redrawn with
// the next attempt number.
//
// Bit-identical everywhere because every floating-point step is one IEEE
// operation rounded to nearest: the logarithm is computed here from +, -, *, /
// (no libm), sqrt is correctly rounded on both sides, and no multiply-add is
// fused (device: __dmul_rn / __dadd_rn, which nvcc never contracts; host: the
// functions are compiled with fp-contract off).
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TEMPER_CN_FN __host__ __device__ inline
#else
#define TEMPER_CN_FN inline
#endif

#if !defined(__CUDA_ARCH__)
#include <cmath>
#if defined(__clang__)
#define TEMPER_CN_NOFUSE
#elif defined(__GNUC__)
#define TEMPER_CN_NOFUSE __attribute__((optimize("fp-contract=off")))
#else
#define TEMPER_CN_NOFUSE
#endif
#else
#define TEMPER_CN_NOFUSE
#endif

namespace temper {
namespace cnormal {

// ---- Philox4x32-10 -----------------------------------------------------------
struct U32x4 {
  uint32_t v[4];
};

TEMPER_CN_FN U32x4 philox4x32_10(U32x4 c, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    const uint64_t p0 = uint64_t(0xD2511F53u) * c.v[0], p1 = uint64_t(0xCD9E8D57u) * c.v[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0), hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c = U32x4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
  }
  return c;
}

// ---- unfused IEEE double arithmetic ------------------------------------------
#if defined(__CUDA_ARCH__)
__device__ inline double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ inline double add(double a, double b) { return __dadd_rn(a, b); }
__device__ inline double div(double a, double b) { return __ddiv_rn(a, b); }
__device__ inline double sqrt_rn(double a) { return __dsqrt_rn(a); }
#else
TEMPER_CN_NOFUSE inline double mul(double a, double b) { return a * b; }
TEMPER_CN_NOFUSE inline double add(double a, double b) { return a + b; }
TEMPER_CN_NOFUSE inline double div(double a, double b) { return a / b; }
inline double sqrt_rn(double a) { return std::sqrt(a); }
#endif

TEMPER_CN_FN uint64_t bits_of(double x) {
  uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
TEMPER_CN_FN double double_of(uint64_t b) {
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// Natural logarithm of a normal positive double (relative error ~1e-16):
// x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(f / (2 + f)), f = m - 1 (exact).
TEMPER_CN_FN TEMPER_CN_NOFUSE double log_positive(double x) {
  const uint64_t b = bits_of(x);
  int e = int((b >> 52) & 0x7FF) - 1023;
  double m = double_of((b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
  if (m > 1.4142135623730951) m = mul(m, 0.5), e += 1;
  const double f = add(m, -1.0);
  const double s = div(f, add(2.0, f));
  const double z = mul(s, s);
  // 1 + z/3 + z^2/5 + ... + z^11/23 (z <= 0.0295: the next term is below 1e-18)
  double p = 1.0 / 23.0;
  p = add(mul(p, z), 1.0 / 21.0);
  p = add(mul(p, z), 1.0 / 19.0);
  p = add(mul(p, z), 1.0 / 17.0);
  p = add(mul(p, z), 1.0 / 15.0);
  p = add(mul(p, z), 1.0 / 13.0);
  p = add(mul(p, z), 1.0 / 11.0);
  p = add(mul(p, z), 1.0 / 9.0);
  p = add(mul(p, z), 1.0 / 7.0);
  p = add(mul(p, z), 1.0 / 5.0);
  p = add(mul(p, z), 1.0 / 3.0);
  p = add(mul(p, z), 1.0);
  return add(mul(double(e), 0.6931471805599453), mul(mul(2.0, s), p));
}

// A uniform double in (-1, 1), never 0, from 64 bits: (k - 2^51 + 1/2) / 2^51, k < 2^52.
TEMPER_CN_FN TEMPER_CN_NOFUSE double symmetric_uniform(uint32_t hi, uint32_t lo) {
  const uint64_t k = ((uint64_t(hi) << 32) | lo) >> 12;
  return mul(add(double(int64_t(k) - (int64_t(1) << 51)), 0.5), 1.0 / 2251799813685248.0);
}

// The normals of elements 2 pair and 2 pair + 1 of stream `stream` under `seed`.
TEMPER_CN_FN TEMPER_CN_NOFUSE void normal_pair(uint64_t seed, uint32_t stream, uint64_t pair, double& z0,
                                               double& z1) {
  for (uint32_t attempt = 0; attempt < 64; ++attempt) {
    const U32x4 r = philox4x32_10(U32x4{{uint32_t(pair), uint32_t(pair >> 32), stream, attempt}}, uint32_t(seed),
                                  uint32_t(seed >> 32));
    const double x = symmetric_uniform(r.v[0], r.v[1]), y = symmetric_uniform(r.v[2], r.v[3]);
    const double s = add(mul(x, x), mul(y, y));
    if (s >= 1.0) continue;  // s > 0: x, y are never 0
    const double f = sqrt_rn(div(mul(-2.0, log_positive(s)), s));
    z0 = mul(x, f);
    z1 = mul(y, f);
    return;
  }
  z0 = z1 = 0.0;  // 64 rejections in a row: probability 0.215^64, about 1e-43
}

}  // namespace cnormal
}  // namespace temper

namespace temper {
namespace cnormal {

// out[j] = std * z(begin + j) for begin <= i < end (host; T float or double).
template <typename T>
void fill_range(T* out, int64_t begin, int64_t end, uint64_t seed, uint32_t stream, double std) {
  for (int64_t i = begin & ~int64_t(1); i < end; i += 2) {
    double z[2];
    normal_pair(seed, stream, uint64_t(i) >> 1, z[0], z[1]);
    for (int j = 0; j < 2; ++j)
      if (i + j >= begin && i + j < end) out[i + j - begin] = T(mul(std, z[j]));
  }
}

}  // namespace cnormal
}  // namespace temper
