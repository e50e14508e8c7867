// CUDA generation ops vs the CPU backend: kv_cache_write (exact, both the
// 16-byte and the element path, untouched cache rows keep their values) and
// sample_tokens (greedy, temperature, top-k, top-p and their mix, bf16 ties,
// V up to 151936), and the InferenceEngine's decode steps replayed as CUDA
// graphs (batch-size buckets with padding rows) against the same steps run call
// by call and against the CPU engine. Sampling choices must equal the CPU twin's; where they
// differ the test accepts only a near-tie: the draw's target lies within
// rounding of the boundary between the two tokens' CDF intervals, computed here
// in double from the contract. Without a GPU every test skips.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "gpu_test_util.h"
#include "model/decoder.h"
#include "model/inference.h"
#include "rl/generation.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32, I32 = DType::I32;

// The contract of Kernels::sample_tokens in double: kept tokens in order with
// their CDF intervals [lo, hi) in units of the kept mass, and logp of any token.
struct RefRow {
  std::vector<int32_t> kept;
  std::vector<double> lo, hi;
  double target = 0.0, lse = 0.0, inv_t = 1.0;
};

RefRow reference_row(const float* x, int64_t V, float temperature, int top_k, float top_p, double u) {
  RefRow r;
  r.inv_t = temperature <= 0.0f ? 1.0 : 1.0 / double(temperature);
  std::vector<double> z(static_cast<size_t>(V));
  double mx = -INFINITY;
  for (int64_t j = 0; j < V; ++j) mx = std::max(mx, z[size_t(j)] = double(x[j]) * r.inv_t);
  double sum = 0.0;
  for (double v : z) sum += std::exp(v - mx);
  r.lse = mx + std::log(sum);
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[size_t(a)] > z[size_t(b)]; });
  int64_t kept = (top_k > 0 && top_k < V) ? top_k : V;
  double total = 0.0;
  for (int64_t i = 0; i < kept; ++i) total += std::exp(z[size_t(order[size_t(i)])] - mx);
  if (top_p < 1.0f) {
    double cum = 0.0;
    int64_t m = 0;
    while (m < kept) {
      cum += std::exp(z[size_t(order[size_t(m)])] - mx);
      ++m;
      if (cum >= double(top_p) * total) break;
    }
    kept = std::max<int64_t>(m, 1);
    total = 0.0;
    for (int64_t i = 0; i < kept; ++i) total += std::exp(z[size_t(order[size_t(i)])] - mx);
  }
  double cum = 0.0;
  for (int64_t i = 0; i < kept; ++i) {
    const int32_t t = order[size_t(i)];
    r.kept.push_back(t);
    r.lo.push_back(cum / total);
    cum += std::exp(z[size_t(t)] - mx);
    r.hi.push_back(cum / total);
  }
  r.target = u;
  return r;
}

class CudaGenerationTest : public CudaVsCpuTest {
 protected:
  CudaGenerationTest() : CudaVsCpuTest(7) {}

  // Runs both backends on the same logits (host f32, bf16-representable when
  // `as_bf16`) and checks tokens (equal, or a near-tie) and logp.
  void check_sampling(const Tensor& logits, const std::vector<float>& u, float temperature, int top_k, float top_p,
                      bool as_bf16, const std::string& tag) {
    const int64_t B = logits.dim(0), V = logits.dim(1);
    Tensor hu = Tensor::empty({B}, F32);
    std::copy(u.begin(), u.end(), hu.data<float>());
    Tensor tok = to_dev(*g, host_i32(std::vector<int32_t>(size_t(B), -7)), I32);
    Tensor lp = poisoned(*g, {B}, F32);
    g->sample_tokens(tok, lp, to_dev(*g, logits, as_bf16 ? BF16 : F32), to_dev(*g, hu, F32), temperature, top_k,
                     top_p);
    Tensor rtok = Tensor::empty({B}, I32), rlp = Tensor::empty({B}, F32);
    cpu->sample_tokens(rtok, rlp, logits, hu, temperature, top_k, top_p);
    Tensor gtok = host(tok), glp = host(lp);
    int64_t differ = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int32_t got = gtok.data<int32_t>()[b], want = rtok.data<int32_t>()[b];
      ASSERT_GE(got, 0) << tag << " row " << b;
      ASSERT_LT(got, V) << tag << " row " << b;
      const RefRow ref = reference_row(logits.data<float>() + b * V, V, temperature, top_k, top_p, u[size_t(b)]);
      const double z_got = double(logits.data<float>()[b * V + got]) * ref.inv_t;
      EXPECT_NEAR(glp.data<float>()[b], z_got - ref.lse, 2e-4 * std::max(1.0, std::fabs(ref.lse)))
          << tag << " logp row " << b;
      if (got == want) continue;
      ++differ;
      if (temperature <= 0.0f) {  // greedy: only an exact tie of values is acceptable
        EXPECT_EQ(logits.data<float>()[b * V + got], logits.data<float>()[b * V + want]) << tag << " row " << b;
        continue;
      }
      auto it = std::find(ref.kept.begin(), ref.kept.end(), got);
      ASSERT_NE(it, ref.kept.end()) << tag << " row " << b << ": token " << got << " is not in the kept set (CPU drew "
                                    << want << ")";
      const size_t i = size_t(it - ref.kept.begin());
      const double slack = 1e-5;
      EXPECT_TRUE(ref.target >= ref.lo[i] - slack && ref.target < ref.hi[i] + slack)
          << tag << " row " << b << ": GPU drew " << got << " with CDF interval [" << ref.lo[i] << ", " << ref.hi[i]
          << ") for u = " << ref.target << "; CPU drew " << want;
    }
    EXPECT_LE(differ, std::max<int64_t>(1, B / 50)) << tag << ": too many near-tie disagreements";
  }

  Tensor random_logits(int64_t B, int64_t V, double scale, bool bf16) {
    Tensor t = Tensor::empty({B, V}, F32);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float x = float(scale * rng.normal());
      t.data<float>()[i] = bf16 ? round_bf16(x) : x;
    }
    return t;
  }
  std::vector<float> uniforms(int64_t B) {
    std::vector<float> u(static_cast<size_t>(B));
    for (auto& x : u) x = std::min(float(rng.uniform()), std::nextafter(1.0f, 0.0f));  // float rounding may reach 1
    return u;
  }
};

// Decode steps recorded as CUDA graphs (bucketed batches, padding rows in slot
// -1) give the logits of the call-by-call steps and of the CPU engine,
// as the live set shrinks and grows; the Generator stays reproducible from its seed.
TEST_F(CudaGenerationTest, GraphDecodeMatchesEagerAndCpu) {
  ModelConfig c;
  c.vocab_size = 263;
  c.d_model = 96;
  c.n_layers = 2;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.ffn_dim = 200;
  c.init_std = 0.05f;
  c.qkv_bias = true;
  c.validate();
  Decoder mc(c, *cpu, F32);
  mc.init_random(3);
  Decoder mg(c, *g, F32);
  ASSERT_EQ(mg.params().size(), mc.params().size());
  for (size_t i = 0; i < mc.params().size(); ++i) g->copy(mg.params()[i].value, mc.params()[i].value);
  mg.refresh_compute();
  const int S = 12, T = 40;
  InferenceEngine ec(mc, *cpu, S, T), eg(mg, *g, S, T), ee(mg, *g, S, T);
  eg.set_use_graphs(true);
  ee.set_use_graphs(false);
  std::vector<int> slots{0, 3, 5, 7, 11};
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < slots.size(); ++i) {
    std::vector<int32_t> p(3 + 2 * i);
    for (auto& t : p) t = int32_t(rng.below(uint64_t(c.vocab_size)));
    prompts.push_back(p);
  }
  ec.prefill(slots, prompts);
  eg.prefill(slots, prompts);
  ee.prefill(slots, prompts);
  auto worst = [&](const Tensor& dev, const Tensor& ref) {
    Tensor a = to_host(*g, dev);
    double num = 0, den = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const double x = double(a.data<float>()[i]), y = double(ref.data<float>()[i]);
      if (!std::isfinite(x)) return double(INFINITY);
      num = std::max(num, std::fabs(x - y));
      den = std::max(den, std::fabs(y));
    }
    return num / std::max(den, 1e-30);
  };
  std::vector<int32_t> len;
  for (const auto& p : prompts) len.push_back(int32_t(p.size()));
  for (int step = 0; step < 8; ++step) {
    // steps 0-2: 5 live rows (bucket 8); 3-5: 3 live; 6-7: slots 1, 2 join by prefill
    if (step == 3) {
      slots = {3, 7, 11};
      len = {len[1], len[3], len[4]};
    }
    if (step == 6) {
      std::vector<std::vector<int32_t>> more{{5, 6, 7}, {8, 9}};
      ec.prefill({1, 2}, more);
      eg.prefill({1, 2}, more);
      ee.prefill({1, 2}, more);
      slots.insert(slots.end(), {1, 2});
      len.insert(len.end(), {3, 2});
    }
    std::vector<int32_t> toks, pos;
    for (size_t i = 0; i < slots.size(); ++i) {
      toks.push_back(int32_t((step * 31 + slots[i] * 7) % c.vocab_size));
      pos.push_back(len[i]++);
    }
    Tensor rc = ec.decode(slots, toks, pos);
    Tensor rcf = Tensor::empty(rc.shape(), F32);
    cpu->copy(rcf, rc);
    const double eg_cpu = worst(eg.decode(slots, toks, pos), rcf);
    const double ee_cpu = worst(ee.decode(slots, toks, pos), rcf);
    EXPECT_LT(eg_cpu, 3e-2) << "graph decode vs cpu, step " << step;
    EXPECT_LT(ee_cpu, 3e-2) << "eager decode vs cpu, step " << step;
    EXPECT_LT(std::fabs(eg_cpu - ee_cpu), 1e-2) << "graph and eager decode differ, step " << step;
  }
  EXPECT_GE(eg.graphs_recorded(), 1);
  EXPECT_EQ(ee.graphs_recorded(), 0);

  Generator gen(mg, *g, 6);
  gen.set_decode_graphs(true);
  SamplingOptions so;
  so.n_samples = 3;
  so.max_new_tokens = 12;
  so.seed = 5;
  so.stop_ids = {17};
  std::vector<std::vector<int32_t>> ps{{1, 2, 3}, {4, 5}, {6, 7, 8, 9}};
  auto a = gen.generate(ps, so), b = gen.generate(ps, so);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << "sample " << i;
    for (int32_t t : a[i].tokens) EXPECT_LT(t, c.vocab_size);
  }
}

// mask_logits_from in place on the device equals the host-memory default (the CPU twin).
TEST_F(CudaGenerationTest, MaskLogitsFromMatchesDefault) {
  for (DType dt : {BF16, F32}) {
    for (int64_t first : {int64_t(0), int64_t(5), int64_t(150000), int64_t(151936)}) {
      Tensor x = random_logits(3, 151936, 2.0, true);
      Tensor refc = Tensor::empty(x.shape(), F32);
      cpu->copy(refc, x);
      cpu->mask_logits_from(refc, first);
      Tensor d = to_dev(*g, x, dt);
      g->mask_logits_from(d, first);
      Tensor got = host(d);
      for (int64_t i = 0; i < refc.numel(); ++i)
        ASSERT_EQ(got.data<float>()[i], refc.data<float>()[i]) << dtype_name(dt) << " first " << first << " at " << i;
    }
  }
}

TEST_F(CudaGenerationTest, KvCacheWrite) {
  struct Case {
    int64_t S, T, KVH, D, N;
  };
  // D = 64, 128: 16-byte path; KVH*D = 18: element path.
  for (const Case& c : {Case{3, 17, 2, 64, 9}, Case{2, 40, 2, 128, 40}, Case{4, 5, 3, 6, 7}}) {
    const std::string tag = "S=" + std::to_string(c.S) + " T=" + std::to_string(c.T) + " KVH=" +
                            std::to_string(c.KVH) + " D=" + std::to_string(c.D);
    Tensor kc0 = host_rand({c.S, c.T, c.KVH, c.D}, rng), vc0 = host_rand({c.S, c.T, c.KVH, c.D}, rng);
    Tensor k = host_rand({c.N, c.KVH, c.D}, rng), v = host_rand({c.N, c.KVH, c.D}, rng);
    // distinct (slot, pos) pairs: a shuffled subset of all cells
    std::vector<int32_t> cells(static_cast<size_t>(c.S * c.T));
    std::iota(cells.begin(), cells.end(), 0);
    for (size_t i = cells.size() - 1; i > 0; --i) std::swap(cells[i], cells[size_t(rng.below(i + 1))]);
    std::vector<int32_t> slot(static_cast<size_t>(c.N)), pos(static_cast<size_t>(c.N));
    for (int64_t n = 0; n < c.N; ++n) {
      slot[size_t(n)] = cells[size_t(n)] / int32_t(c.T);
      pos[size_t(n)] = cells[size_t(n)] % int32_t(c.T);
    }
    Tensor kc = to_dev(*g, kc0, BF16), vc = to_dev(*g, vc0, BF16);
    g->kv_cache_write(kc, vc, to_dev(*g, k, BF16), to_dev(*g, v, BF16), to_dev(*g, host_i32(slot), I32),
                      to_dev(*g, host_i32(pos), I32));
    Tensor rkc = host_clone(kc0), rvc = host_clone(vc0);
    cpu->kv_cache_write(rkc, rvc, k, v, host_i32(slot), host_i32(pos));
    expect_close(host(kc), rkc, 0.0, 0.0, "kcache " + tag);
    expect_close(host(vc), rvc, 0.0, 0.0, "vcache " + tag);
  }
}

// The decode step's fused calls against the calls they replace, on the device
// (Kernels:: defaults: rope_forward twice + kv_cache_write; add_inplace +
// rmsnorm_forward): rope_cache_write and its packed form qkv_rope_cache_write bit
// for bit, with a padding row in slot -1 (no cache write); add_rmsnorm_forward on
// bf16 rows (the 16-byte kernel within rounding, the row kernel bit for bit).
TEST_F(CudaGenerationTest, FusedDecodeOpsMatchTheirParts) {
  const int64_t S = 4, T = 12, H = 6, KVH = 2, D = 128, N = 5, C = 1536;
  Tensor kc0 = host_rand({S, T, KVH, D}, rng), vc0 = host_rand({S, T, KVH, D}, rng);
  Tensor q0 = host_rand({N, H, D}, rng), k0 = host_rand({N, KVH, D}, rng), v0 = host_rand({N, KVH, D}, rng);
  const std::vector<int32_t> slot{2, 0, -1, 3, 1}, pos{11, 0, 0, 7, 5};
  Tensor ds = to_dev(*g, host_i32(slot), I32), dp = to_dev(*g, host_i32(pos), I32);
  Tensor q1 = to_dev(*g, q0, BF16), k1 = to_dev(*g, k0, BF16), kc1 = to_dev(*g, kc0, BF16), vc1 = to_dev(*g, vc0, BF16);
  Tensor q2 = to_dev(*g, q0, BF16), k2 = to_dev(*g, k0, BF16), kc2 = to_dev(*g, kc0, BF16), vc2 = to_dev(*g, vc0, BF16);
  Tensor dv = to_dev(*g, v0, BF16);
  g->rope_cache_write(q1, k1, dv, kc1, vc1, ds, dp, 1e6f);
  g->Kernels::rope_cache_write(q2, k2, dv, kc2, vc2, ds, dp, 1e6f);
  expect_close(host(q1), host(q2), 0.0, 0.0, "rope_cache_write q");
  expect_close(host(k1), host(k2), 0.0, 0.0, "rope_cache_write k");
  expect_close(host(kc1), host(kc2), 0.0, 0.0, "rope_cache_write kcache");
  expect_close(host(vc1), host(vc2), 0.0, 0.0, "rope_cache_write vcache");
  Tensor rq = host_clone(q0);  // q against the CPU rope (the cache writes: KvCacheWrite and the rope tests)
  cpu->rope_forward(rq, host_i32(pos), 1e6f);
  expect_close(host(q1), rq, 0.02, 0.02, "rope_cache_write q vs cpu");

  // the packed form: qkv [N, H + 2 KVH, D] from one GEMM
  Tensor qkv0 = host_rand({N, H + 2 * KVH, D}, rng);
  Tensor qkv = to_dev(*g, qkv0, BF16);
  Tensor q3 = poisoned(*g, {N, H, D}, BF16), q4 = poisoned(*g, {N, H, D}, BF16);
  Tensor kc3 = to_dev(*g, kc0, BF16), vc3 = to_dev(*g, vc0, BF16), kc4 = to_dev(*g, kc0, BF16), vc4 = to_dev(*g, vc0, BF16);
  g->qkv_rope_cache_write(q3, qkv, kc3, vc3, ds, dp, 1e6f);
  g->Kernels::qkv_rope_cache_write(q4, qkv, kc4, vc4, ds, dp, 1e6f);
  expect_close(host(q3), host(q4), 0.0, 0.0, "qkv_rope_cache_write q");
  expect_close(host(kc3), host(kc4), 0.0, 0.0, "qkv_rope_cache_write kcache");
  expect_close(host(vc3), host(vc4), 0.0, 0.0, "qkv_rope_cache_write vcache");
  expect_close(host(qkv), qkv0, 0.0, 0.0, "qkv_rope_cache_write leaves qkv");

  Tensor y0 = host_rand({N, C}, rng), x0 = host_rand({N, C}, rng), w0 = host_rand({C}, rng);
  Tensor y1 = to_dev(*g, y0, BF16), y2 = to_dev(*g, y0, BF16), dx = to_dev(*g, x0, BF16), dw = to_dev(*g, w0, BF16);
  Tensor o1 = poisoned(*g, {N, C}, BF16), o2 = poisoned(*g, {N, C}, BF16);
  Tensor r1 = poisoned(*g, {N}, F32), r2 = poisoned(*g, {N}, F32);
  g->add_rmsnorm_forward(y1, dx, o1, r1, dw, 1e-6f);
  g->Kernels::add_rmsnorm_forward(y2, dx, o2, r2, dw, 1e-6f);
  // y bit for bit; rstd and out within the rounding of another summation order (the
  // fused kernel sums the squares 8 at a time per lane)
  expect_close(host(y1), host(y2), 0.0, 0.0, "add_rmsnorm_forward y");
  expect_close(host(r1), host(r2), 0.0, 1e-5, "add_rmsnorm_forward rstd");
  expect_close(host(o1), host(o2), 0.0, 8e-3, "add_rmsnorm_forward out");
  // a width off the 16-byte path (C = 200) runs the row kernel
  Tensor ya = host_rand({N, 200}, rng), xa = host_rand({N, 200}, rng), wa = host_rand({200}, rng);
  Tensor ya1 = to_dev(*g, ya, BF16), ya2 = to_dev(*g, ya, BF16), xad = to_dev(*g, xa, BF16), wad = to_dev(*g, wa, BF16);
  Tensor oa1 = poisoned(*g, {N, 200}, BF16), oa2 = poisoned(*g, {N, 200}, BF16);
  Tensor ra1 = poisoned(*g, {N}, F32), ra2 = poisoned(*g, {N}, F32);
  g->add_rmsnorm_forward(ya1, xad, oa1, ra1, wad, 1e-6f);
  g->Kernels::add_rmsnorm_forward(ya2, xad, oa2, ra2, wad, 1e-6f);
  expect_close(host(ya1), host(ya2), 0.0, 0.0, "add_rmsnorm_forward y (C = 200)");
  expect_close(host(oa1), host(oa2), 0.0, 0.0, "add_rmsnorm_forward out (C = 200)");
}

TEST_F(CudaGenerationTest, KvCacheWriteRejectsBadShapes) {
  Tensor kc = g->alloc({2, 8, 2, 64}, BF16), vc = g->alloc({2, 8, 2, 64}, BF16);
  Tensor k = g->alloc({3, 2, 64}, BF16), v = g->alloc({3, 2, 64}, BF16), kbad = g->alloc({3, 1, 64}, BF16);
  Tensor idx = to_dev(*g, host_i32({0, 1, 0}), I32), idx2 = to_dev(*g, host_i32({0, 1}), I32);
  EXPECT_THROW(g->kv_cache_write(kc, vc, kbad, v, idx, idx), Error);
  EXPECT_THROW(g->kv_cache_write(kc, vc, k, v, idx2, idx), Error);
  Tensor k32 = g->alloc({3, 2, 64}, F32);
  EXPECT_THROW(g->kv_cache_write(kc, vc, k32, v, idx, idx), Error);
}

TEST_F(CudaGenerationTest, GreedyMatchesArgmaxLowestIdOnTies) {
  for (int64_t V : {5, 1000, 151936}) {
    const int64_t B = 6;
    Tensor x = random_logits(B, V, 3.0, true);
    // row 1: the max appears twice (lowest id must win); row 2: -inf entries
    float* r1 = x.data<float>() + V;
    const float big = 40.0f;
    r1[V - 1] = big;
    r1[V / 2] = big;
    float* r2 = x.data<float>() + 2 * V;
    for (int64_t j = 0; j < V; j += 2) r2[j] = -INFINITY;
    for (bool as_bf16 : {true, false})
      check_sampling(x, uniforms(B), 0.0f, 0, 1.0f, as_bf16, "greedy V=" + std::to_string(V));
    check_sampling(x, uniforms(B), 0.8f, 1, 1.0f, true, "top_k=1 V=" + std::to_string(V));
    check_sampling(x, uniforms(B), 1.0f, 0, 0.0f, true, "top_p=0 V=" + std::to_string(V));
  }
}

TEST_F(CudaGenerationTest, SamplingMatchesCpu) {
  struct Case {
    float temperature;
    int top_k;
    float top_p;
  };
  const Case cases[] = {{1.0f, 0, 1.0f}, {0.7f, 0, 1.0f}, {1.0f, 50, 1.0f}, {1.0f, 0, 0.9f},
                        {0.6f, 20, 0.95f}, {1.3f, 1000, 0.5f}, {1.0f, 200000, 1.0f}};
  for (int64_t V : {7, 4099, 151936}) {
    const int64_t B = V > 10000 ? 24 : 64;
    for (bool as_bf16 : {true, false}) {
      Tensor x = random_logits(B, V, V > 10 ? 2.5 : 1.0, as_bf16);
      for (const Case& c : cases) {
        const std::string tag = "V=" + std::to_string(V) + (as_bf16 ? " bf16" : " f32") + " T=" +
                                std::to_string(c.temperature) + " top_k=" + std::to_string(c.top_k) +
                                " top_p=" + std::to_string(c.top_p);
        check_sampling(x, uniforms(B), c.temperature, c.top_k, c.top_p, as_bf16, tag);
      }
    }
  }
}

// Plain sampling (no top-k, no top-p) takes the fixed-point bin search; every branch
// of it against the CPU twin at the full vocabulary: bins of few tokens (sorted in
// shared memory), bins of thousands of bf16 ties (counted in id order), f32 rows so
// narrow that a bin holds thousands of distinct values (the radix search), a
// uniform row, peaked rows and rows half -inf. Repeated calls give the same draws.
TEST_F(CudaGenerationTest, PlainDrawBranchesMatchCpu) {
  const int64_t V = 151936, B = 12;
  struct Case {
    double scale;
    bool bf16;
    float temperature;
    const char* what;
  };
  const Case cases[] = {{1.0, true, 1.0f, "bf16 scale 1"},     {0.05, true, 1.0f, "bf16 ties"},
                        {0.02, false, 1.0f, "f32 narrow"},     {0.0, true, 1.0f, "uniform"},
                        {8.0, true, 1.0f, "peaked"},           {1.0, true, 0.6f, "bf16 T 0.6"},
                        {1.0, false, 1.7f, "f32 T 1.7"},       {3.0, true, 1.0f, "half -inf"}};
  for (const Case& c : cases) {
    Tensor x = random_logits(B, V, c.scale, c.bf16);
    if (std::string(c.what) == "half -inf")
      for (int64_t i = 0; i < x.numel(); i += 2) x.data<float>()[i] = -INFINITY;
    if (std::string(c.what) == "bf16 ties")  // values in [1, 2): bf16 steps of 1/128, one value a bin, ~9000 tokens each
      for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = round_bf16(1.5f + x.data<float>()[i]);
    check_sampling(x, uniforms(B), c.temperature, 0, 1.0f, c.bf16, c.what);
  }
  // determinism: the same call twice, bitwise the same tokens and log-probs
  Tensor x = random_logits(B, V, 1.0, true);
  Tensor hu = Tensor::empty({B}, F32);
  const auto u = uniforms(B);
  std::copy(u.begin(), u.end(), hu.data<float>());
  Tensor dx = to_dev(*g, x, BF16), du = to_dev(*g, hu, F32);
  Tensor t1 = g->alloc({B}, I32), l1 = g->alloc({B}, F32), t2 = g->alloc({B}, I32), l2 = g->alloc({B}, F32);
  g->sample_tokens(t1, l1, dx, du, 1.0f, 0, 1.0f);
  g->sample_tokens(t2, l2, dx, du, 1.0f, 0, 1.0f);
  Tensor h1 = host(t1), h2 = host(t2), p1 = host(l1), p2 = host(l2);
  for (int64_t b = 0; b < B; ++b) {
    EXPECT_EQ(h1.data<int32_t>()[b], h2.data<int32_t>()[b]) << "row " << b;
    EXPECT_EQ(p1.data<float>()[b], p2.data<float>()[b]) << "row " << b;
  }
}

TEST_F(CudaGenerationTest, DrawFollowsTheDistribution) {
  // One row repeated with u on a fine grid: token frequencies equal the kept,
  // renormalised softmax to within one grid step per token.
  const int64_t V = 6, B = 2000;
  const float row[V] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};  // a tie at ids 1 and 3
  Tensor x = Tensor::empty({B, V}, F32);
  std::vector<float> u(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    std::copy(row, row + V, x.data<float>() + b * V);
    u[size_t(b)] = float((double(b) + 0.5) / double(B));
  }
  for (const auto& [top_k, top_p] : {std::pair<int, float>{0, 0.9f}, {3, 0.9f}, {0, 1.0f}}) {
    Tensor hu = Tensor::empty({B}, F32);
    std::copy(u.begin(), u.end(), hu.data<float>());
    Tensor tok = g->alloc({B}, I32), lp = g->alloc({B}, F32);
    g->sample_tokens(tok, lp, to_dev(*g, x, F32), to_dev(*g, hu, F32), 1.0f, top_k, top_p);
    Tensor t = host(tok);
    const RefRow ref = reference_row(row, V, 1.0f, top_k, top_p, 0.0);
    std::vector<int64_t> count(size_t(V), 0);
    for (int64_t b = 0; b < B; ++b) ++count[size_t(t.data<int32_t>()[b])];
    std::vector<double> want(size_t(V), 0.0);
    for (size_t i = 0; i < ref.kept.size(); ++i) want[size_t(ref.kept[i])] = ref.hi[i] - ref.lo[i];
    for (int64_t j = 0; j < V; ++j)
      EXPECT_NEAR(double(count[size_t(j)]) / double(B), want[size_t(j)], 1.5 / double(B))
          << "token " << j << " top_k " << top_k << " top_p " << top_p;
    // the tie: id 1 comes before id 3 in the order, so u near 0 draws id 1
    EXPECT_EQ(t.data<int32_t>()[0], 1);
  }
}

TEST_F(CudaGenerationTest, BadInputsThrow) {
  const int64_t V = 300;
  Tensor x = random_logits(3, V, 1.0, false);
  Tensor tok = g->alloc({3}, I32), lp = g->alloc({3}, F32);
  Tensor hu = Tensor::empty({3}, F32);
  hu.data<float>()[0] = 0.1f;
  hu.data<float>()[1] = 0.5f;
  hu.data<float>()[2] = 0.9f;
  Tensor xn = host_clone(x);
  xn.data<float>()[V + 17] = NAN;
  EXPECT_THROW(g->sample_tokens(tok, lp, to_dev(*g, xn, F32), to_dev(*g, hu, F32), 1.0f, 0, 1.0f), Error);
  Tensor xi = host_clone(x);
  for (int64_t j = 0; j < V; ++j) xi.data<float>()[2 * V + j] = -INFINITY;
  EXPECT_THROW(g->sample_tokens(tok, lp, to_dev(*g, xi, F32), to_dev(*g, hu, F32), 0.0f, 0, 1.0f), Error);
  Tensor hu_bad = host_clone(hu);
  hu_bad.data<float>()[1] = 1.0f;
  EXPECT_THROW(g->sample_tokens(tok, lp, to_dev(*g, x, F32), to_dev(*g, hu_bad, F32), 1.0f, 0, 1.0f), Error);
  Tensor tok_wrong = g->alloc({2}, I32);
  EXPECT_THROW(g->sample_tokens(tok_wrong, lp, to_dev(*g, x, F32), to_dev(*g, hu, F32), 1.0f, 0, 1.0f), Error);
  // the backend stays usable after a reported error
  g->sample_tokens(tok, lp, to_dev(*g, x, F32), to_dev(*g, hu, F32), 1.0f, 0, 1.0f);
  EXPECT_TRUE(std::isfinite(host(lp).data<float>()[0]));
}

}  // namespace
}  // namespace temper::gpu_test
