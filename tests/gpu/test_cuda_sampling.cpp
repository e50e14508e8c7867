// CUDA sample_tokens' plain draw (no top-k / top-p: the RL rollout case) as it
// runs at the full vocabulary: the statistics pass over segments of the row,
// the histogram pass over chunks of the row (several blocks per row, integer
// atomics into one histogram per row) and the per-row draw. Against the CPU
// twin: many rows (B = 1024) and one row (B = 1), ties across segment and chunk
// boundaries, huge tie groups, a target in the last bin, rows whose segments are
// -inf, misaligned rows of odd vocabularies, greedy maxima in late segments and
// the error reports. The draw and its logp must not depend on how many rows
// share the call (the number of blocks per row does), and repeat bit for bit.
// Where a token differs from the CPU twin's, only a near-tie is accepted: the
// target u lies within rounding of the GPU token's CDF interval, computed here
// in double from the contract. Without a GPU every test skips.
#include <algorithm>
#include <cmath>
#include <string>

#include "gpu_test_util.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32, I32 = DType::I32;
constexpr int64_t kV = 151936;  // Qwen2's vocabulary

// The CDF interval [lo, hi) of `token` in the plain draw's order (descending z,
// ties by ascending id), in units of the row's mass, and the row's logsumexp.
struct Interval {
  double lo = 0, hi = 0, lse = 0;
};
Interval interval_of(const float* x, int64_t V, double inv_t, int32_t token) {
  double mx = -INFINITY;
  for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(x[j]) * inv_t);
  const double zt = double(x[token]) * inv_t;
  double total = 0, before = 0;
  for (int64_t j = 0; j < V; ++j) {
    const double z = double(x[j]) * inv_t;
    const double m = std::exp(z - mx);
    total += m;
    if (z > zt || (z == zt && j < token)) before += m;
  }
  Interval r;
  r.lo = before / total;
  r.hi = (before + std::exp(zt - mx)) / total;
  r.lse = mx + std::log(total);
  return r;
}

class CudaSamplingTest : public CudaVsCpuTest {
 protected:
  CudaSamplingTest() : CudaVsCpuTest(20) {}

  struct Draw {
    Tensor tok, lp;  // host
  };
  // The GPU draw of rows [b0, b1) of the device logits dx with u (device).
  Draw gpu_draw(const Tensor& dx, const Tensor& du, int64_t b0, int64_t b1, float temperature) {
    const int64_t n = b1 - b0;
    Tensor tok = to_dev(*g, host_i32(std::vector<int32_t>(size_t(n), -7)), I32);
    Tensor lp = poisoned(*g, {n}, F32);
    g->sample_tokens(tok, lp, dx.rows(b0, b1), du.rows(b0, b1), temperature, 0, 1.0f);
    return {host(tok), host(lp)};
  }

  // GPU draws of rows `rows` of host logits x (f32, bf16-representable when as_bf16)
  // against the CPU twin: the same token or a near-tie, logp within rounding.
  void check_rows(const Tensor& x, const std::vector<float>& u, const Draw& d, const std::vector<int64_t>& rows,
                  float temperature, const std::string& tag, int64_t max_differ = 1) {
    const int64_t V = x.dim(1);
    const double inv_t = temperature <= 0.0f ? 1.0 : 1.0 / double(temperature);
    const int64_t n = int64_t(rows.size());
    Tensor xs = Tensor::empty({n, V}, F32), us = Tensor::empty({n}, F32);
    for (int64_t i = 0; i < n; ++i) {
      std::copy(x.data<float>() + rows[size_t(i)] * V, x.data<float>() + (rows[size_t(i)] + 1) * V,
                xs.data<float>() + i * V);
      us.data<float>()[i] = u[size_t(rows[size_t(i)])];
    }
    Tensor rtok = Tensor::empty({n}, I32), rlp = Tensor::empty({n}, F32);
    cpu->sample_tokens(rtok, rlp, xs, us, temperature, 0, 1.0f);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t b = rows[size_t(i)];
      const int32_t got = d.tok.data<int32_t>()[b], want = rtok.data<int32_t>()[i];
      ASSERT_GE(got, 0) << tag << " row " << b;
      ASSERT_LT(got, V) << tag << " row " << b;
      const float* xr = xs.data<float>() + i * V;
      ASSERT_NE(xr[got], -INFINITY) << tag << " row " << b << ": drew a -inf token";
      const Interval iv = interval_of(xr, V, inv_t, got);
      EXPECT_NEAR(d.lp.data<float>()[b], double(xr[got]) * inv_t - iv.lse, 2e-4 * std::max(1.0, std::fabs(iv.lse)))
          << tag << " logp row " << b;
      if (temperature <= 0.0f) {  // greedy: exactly the argmax of lowest id
        EXPECT_EQ(got, want) << tag << " row " << b;
        continue;
      }
      if (got == want) continue;
      ++differ;
      const double t = double(us.data<float>()[i]), slack = 1e-5;
      EXPECT_TRUE(t >= iv.lo - slack && t < iv.hi + slack)
          << tag << " row " << b << ": GPU drew " << got << " with CDF interval [" << iv.lo << ", " << iv.hi
          << ") for u = " << t << "; CPU drew " << want;
    }
    EXPECT_LE(differ, std::max<int64_t>(max_differ, n / 50)) << tag << ": too many near-tie disagreements";
  }

  std::vector<float> uniforms(int64_t B) {
    std::vector<float> u(static_cast<size_t>(B));
    for (auto& v : u) v = std::min(float(rng.uniform()), std::nextafter(1.0f, 0.0f));
    return u;
  }
  Tensor dev_u(const std::vector<float>& u) {
    Tensor h = Tensor::empty({int64_t(u.size())}, F32);
    std::copy(u.begin(), u.end(), h.data<float>());
    return f32(h);
  }
  void expect_same(const Draw& a, const Draw& b, int64_t off, const std::string& tag) {
    for (int64_t i = 0; i < b.tok.numel(); ++i) {
      EXPECT_EQ(a.tok.data<int32_t>()[off + i], b.tok.data<int32_t>()[i]) << tag << " row " << off + i;
      EXPECT_EQ(a.lp.data<float>()[off + i], b.lp.data<float>()[i]) << tag << " logp row " << off + i;
    }
  }
};

// 1024 rows (each row's histogram from one block) against the CPU twin on a
// sample of rows; the same rows drawn 64 at a time (several blocks per row) and
// one at a time (16 blocks) give the same tokens and log-probs bit for bit, and
// a repeated call repeats them; then 300 rows of mixed kinds the same way.
TEST_F(CudaSamplingTest, ManyRowsMatchCpuAndDoNotDependOnTheBatch) {
  const int64_t B = 1024, V = kV;
  std::vector<float> base(static_cast<size_t>(V));
  for (auto& v : base) v = float(rng.normal());
  for (bool as_bf16 : {true, false}) {
    Tensor x = Tensor::empty({B, V}, F32);
    for (int64_t b = 0; b < B; ++b) {  // rows: the base values permuted (odd stride: a bijection) and scaled
      const int64_t a = 2 * (b % 593) + 1, c = (b * 7919) % V;
      const float scale = 0.5f + 0.4f * float(b % 7);
      float* r = x.data<float>() + b * V;
      for (int64_t j = 0; j < V; ++j) {
        const float v = scale * base[size_t((a * j + c) % V)];
        r[j] = as_bf16 ? round_bf16(v) : v;
      }
    }
    const std::vector<float> u = uniforms(B);
    Tensor dx = to_dev(*g, x, as_bf16 ? BF16 : F32), du = dev_u(u);
    const std::string tag = as_bf16 ? "bf16" : "f32";
    const Draw all = gpu_draw(dx, du, 0, B, 1.0f);
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < B; b += 37) rows.push_back(b);
    rows.push_back(B - 1);
    check_rows(x, u, all, rows, 1.0f, tag + " B=1024");
    expect_same(all, gpu_draw(dx, du, 0, B, 1.0f), 0, tag + " repeat");
    expect_same(all, gpu_draw(dx, du, 64, 128, 1.0f), 64, tag + " B=64");
    for (int64_t b : {int64_t(0), int64_t(700), B - 1}) expect_same(all, gpu_draw(dx, du, b, b + 1, 1.0f), b, tag + " B=1");
    // temperature 0.7, then greedy
    const Draw t07 = gpu_draw(dx, du, 0, 96, 0.7f);
    check_rows(x, u, t07, {0, 1, 2, 3, 50, 95}, 0.7f, tag + " T=0.7");
    const Draw greedy = gpu_draw(dx, du, 0, 96, 0.0f);
    check_rows(x, u, greedy, {0, 1, 2, 3, 50, 95}, 0.0f, tag + " greedy");
  }
  // 300 rows of several spreads, masked tails and targets in the last bin (one token above
  // a flat row): one chunk a row in the histogram pass on 132 multiprocessors (the bin
  // scan in the block), against the CPU twin and again 64 at a time (several chunks) and
  // one at a time (16).
  const int64_t Bm = 300;
  for (bool as_bf16 : {true, false}) {
    Tensor x = Tensor::empty({Bm, V}, F32);
    for (int64_t b = 0; b < Bm; ++b) {
      float* r = x.data<float>() + b * V;
      const double sd = 0.3 + 0.5 * double(b % 11);
      for (int64_t j = 0; j < V; ++j) r[j] = float(sd * rng.normal());
      if (b % 5 == 1)  // a masked tail
        for (int64_t j = V - 300; j < V; ++j) r[j] = -INFINITY;
      if (b % 7 == 2) {  // a target in the last bin
        for (int64_t j = 0; j < V; ++j) r[j] = 0.0f;
        r[(b * 131) % V] = 0.5f;
      }
      if (as_bf16)
        for (int64_t j = 0; j < V; ++j) r[j] = round_bf16(r[j]);
    }
    const std::vector<float> u = uniforms(Bm);
    Tensor dx = to_dev(*g, x, as_bf16 ? BF16 : F32), du = dev_u(u);
    const std::string tag = std::string(as_bf16 ? "bf16" : "f32") + " mixed rows";
    const Draw all = gpu_draw(dx, du, 0, Bm, 1.0f);
    expect_same(all, gpu_draw(dx, du, 100, 164, 1.0f), 100, tag + " B=64");
    expect_same(all, gpu_draw(dx, du, 7, 8, 1.0f), 7, tag + " B=1");
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < Bm; b += 23) rows.push_back(b);
    check_rows(x, u, all, rows, 1.0f, tag + " B=300");
  }
}

// Rows built to reach each branch of the draw through the multi-block passes,
// drawn together (B = 9: 16 blocks per row in the histogram pass) and one by one.
TEST_F(CudaSamplingTest, SpecialRowsMatchCpu) {
  const int64_t V = kV;
  for (bool as_bf16 : {true, false}) {
    std::vector<std::vector<float>> rows;
    std::vector<float> u;
    auto normal_row = [&](double scale) {
      std::vector<float> r(static_cast<size_t>(V));
      for (auto& v : r) v = float(scale * rng.normal());
      return r;
    };
    {  // the maxima (one value) at ids spread over every segment and chunk, across their boundaries
      std::vector<float> r = normal_row(1.0);
      for (int64_t j = 0; j < V; j += 4999) r[size_t(j)] = 6.0f;
      for (int64_t j : {int64_t(9495), int64_t(9496), int64_t(15199), int64_t(15200), int64_t(16383),
                        int64_t(16384), V - 1})
        r[size_t(j)] = 6.0f;
      rows.push_back(r);
      u.push_back(0.013f);
    }
    {  // nearly every token ties at the top: the tie counted in id order over the whole row
      std::vector<float> r(static_cast<size_t>(V), 1.0f);
      for (int k = 0; k < 100; ++k) r[size_t(rng.below(uint64_t(V)))] = -2.0f;
      rows.push_back(r);
      u.push_back(0.73f);
    }
    {  // target in the last bin: one token above, 151935 tied at the bottom (bin 4095)
      std::vector<float> r(static_cast<size_t>(V), 0.0f);
      r[77777] = 0.5f;
      rows.push_back(r);
      u.push_back(0.9f);
    }
    {  // the last bin of distinct values (f32: thousands a sub-bin, the radix search; bf16: few values)
      std::vector<float> r(static_cast<size_t>(V));
      for (auto& v : r) v = float(-1e-3 * rng.uniform());
      r[31] = 0.5f;
      rows.push_back(r);
      u.push_back(0.6f);
    }
    {  // whole segments and chunks of -inf: finite ids [50000, 100000) only
      std::vector<float> r = normal_row(2.0);
      for (int64_t j = 0; j < V; ++j)
        if (j < 50000 || j >= 100000) r[size_t(j)] = -INFINITY;
      rows.push_back(r);
      u.push_back(0.5f);
    }
    {  // only the last 3000 ids finite
      std::vector<float> r = normal_row(1.0);
      for (int64_t j = 0; j < V - 3000; ++j) r[size_t(j)] = -INFINITY;
      rows.push_back(r);
      u.push_back(0.3f);
    }
    {  // a masked tail (ids >= 151000 -inf), peaked, u near 1
      std::vector<float> r = normal_row(4.0);
      for (int64_t j = 151000; j < V; ++j) r[size_t(j)] = -INFINITY;
      rows.push_back(r);
      u.push_back(0.999f);
    }
    {  // u just below 1: the end of the order
      rows.push_back(normal_row(1.5));
      u.push_back(std::nextafter(1.0f, 0.0f));
    }
    {  // u = 0: the first token of the order, the max tied in the first and the last segment
      std::vector<float> r = normal_row(1.0);
      r[V - 1] = 9.0f;
      r[3] = 9.0f;
      rows.push_back(r);
      u.push_back(0.0f);
    }
    const int64_t B = int64_t(rows.size());
    Tensor x = Tensor::empty({B, V}, F32);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < V; ++j) {
        const float v = rows[size_t(b)][size_t(j)];
        x.data<float>()[b * V + j] = as_bf16 ? round_bf16(v) : v;
      }
    Tensor dx = to_dev(*g, x, as_bf16 ? BF16 : F32), du = dev_u(u);
    const std::string tag = as_bf16 ? "bf16" : "f32";
    std::vector<int64_t> all(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) all[size_t(b)] = b;
    const Draw d = gpu_draw(dx, du, 0, B, 1.0f);
    // (u near 1 lands among the order's last tokens, whose CDF intervals are narrower than
    // rounding: near-ties are likely there)
    check_rows(x, u, d, all, 1.0f, tag + " special rows", 2);
    EXPECT_EQ(d.tok.data<int32_t>()[B - 1], 3) << tag << ": u = 0 draws the lowest id of the maxima";
    for (int64_t b = 0; b < B; ++b) expect_same(d, gpu_draw(dx, du, b, b + 1, 1.0f), b, tag + " alone");
    // greedy: the lowest id of the maxima, wherever the segments put them
    const Draw gr = gpu_draw(dx, du, 0, B, 0.0f);
    check_rows(x, u, gr, all, 0.0f, tag + " greedy special rows");
    EXPECT_EQ(gr.tok.data<int32_t>()[0], 0) << tag;
    EXPECT_EQ(gr.tok.data<int32_t>()[2], 77777) << tag;
  }
}

// Vocabularies whose rows start off 16-byte boundaries, of one or two segments
// (a segment of a few elements), and of one element.
TEST_F(CudaSamplingTest, OddVocabulariesMatchCpu) {
  for (int64_t V : {int64_t(1), int64_t(2), int64_t(17), int64_t(4099), int64_t(16385), int64_t(33333)}) {
    const int64_t B = 33;
    for (bool as_bf16 : {true, false}) {
      Tensor x = Tensor::empty({B, V}, F32);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float v = float(2.0 * rng.normal());
        x.data<float>()[i] = as_bf16 ? round_bf16(v) : v;
      }
      const std::vector<float> u = uniforms(B);
      Tensor dx = to_dev(*g, x, as_bf16 ? BF16 : F32), du = dev_u(u);
      std::vector<int64_t> all(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) all[size_t(b)] = b;
      const std::string tag = "V=" + std::to_string(V) + (as_bf16 ? " bf16" : " f32");
      const Draw d = gpu_draw(dx, du, 0, B, 1.0f);
      check_rows(x, u, d, all, 1.0f, tag);
      expect_same(d, gpu_draw(dx, du, 5, 6, 1.0f), 5, tag + " alone");
      check_rows(x, u, gpu_draw(dx, du, 0, B, 0.0f), all, 0.0f, tag + " greedy");
    }
  }
}

// NaN / +inf in a late segment, a row of only -inf and u outside [0, 1) are reported
// after the launch, naming the first bad row; the backend stays usable.
TEST_F(CudaSamplingTest, BadRowsAreNamed) {
  const int64_t B = 300, V = kV;
  Tensor x = Tensor::empty({B, V}, F32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = round_bf16(float(rng.normal()));
  std::vector<float> u = uniforms(B);
  auto message = [&](const Tensor& hx, const std::vector<float>& hu, float temperature) -> std::string {
    Tensor tok = g->alloc({B}, I32), lp = g->alloc({B}, F32);
    try {
      g->sample_tokens(tok, lp, bf(hx), dev_u(hu), temperature, 0, 1.0f);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  Tensor xn = host_clone(x);
  xn.data<float>()[211 * V + V - 5] = NAN;
  xn.data<float>()[250 * V + 3] = INFINITY;
  EXPECT_NE(message(xn, u, 1.0f).find("row 211 "), std::string::npos) << message(xn, u, 1.0f);
  EXPECT_NE(message(xn, u, 0.0f).find("row 211 "), std::string::npos);
  Tensor xi = host_clone(x);
  for (int64_t j = 0; j < V; ++j) xi.data<float>()[17 * V + j] = -INFINITY;
  EXPECT_NE(message(xi, u, 1.0f).find("row 17 "), std::string::npos) << message(xi, u, 1.0f);
  std::vector<float> ub = u;
  ub[123] = 1.0f;
  ub[200] = -0.5f;
  EXPECT_NE(message(x, ub, 1.0f).find("u[123]"), std::string::npos) << message(x, ub, 1.0f);
  EXPECT_EQ(message(x, u, 1.0f), "");
}

}  // namespace
}  // namespace temper::gpu_test
