// CUDA attention vs the f32 CPU oracle: attention_forward / attention_backward
// (every variant: own tensor-core kernels v1/v2 and cuDNN v3 for D = 64 and
// 128, scalar fallback for other D) over
// packed documents of odd lengths, empty and one-token documents, GQA ratios
// 1, 2, 6 and 7; attention_cached for decode (split-K) and prefill, several
// slots of different lengths, groups of more than 8 query heads. Outputs are
// NaN-poisoned before each call so unwritten elements fail; inputs are
// bf16-representable so both backends see the same numbers. Without a GPU
// every test skips.
#include <algorithm>
#include <cmath>
#include <string>

#include "gpu_test_util.h"
#include "kernels/cuda/attention_variant.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32;

struct AttnCase {
  std::vector<int32_t> docs;  // document lengths (0 = empty document)
  int64_t H, KVH, D;
};

std::string describe(const AttnCase& cs, int64_t N) {
  std::string docs;
  for (int32_t len : cs.docs) docs += (docs.empty() ? "" : ",") + std::to_string(len);
  return "N=" + std::to_string(N) + " docs={" + docs + "} H=" + std::to_string(cs.H) +
         " KVH=" + std::to_string(cs.KVH) + " D=" + std::to_string(cs.D);
}

class CudaAttentionTest : public CudaVsCpuTest {
 protected:
  CudaAttentionTest() : CudaVsCpuTest(777) {}
  // bf16 outputs: 2% relative plus an absolute floor scaled to the reference
  // (gradients are sums of many bf16-rounded products and cancel).
  void close_bf16(const Tensor& got, const Tensor& ref, double floor, const std::string& what) {
    expect_close(got, ref, floor * std::max(max_abs(ref), 1e-3), 2e-2, what);
  }
  // attention_forward and _backward on one packed batch vs the CPU backend.
  void run_case(const AttnCase& cs);
};

void CudaAttentionTest::run_case(const AttnCase& cs) {
  Kernels& g = *this->g;
  Kernels& cpu = *this->cpu;
  CudaAttentionTest& t = *this;
  std::vector<int32_t> cu = {0};
  int max_len = 1;
  for (int32_t len : cs.docs) {
    cu.push_back(cu.back() + len);
    max_len = std::max(max_len, int(len));
  }
  const int64_t N = cu.back(), H = cs.H, KVH = cs.KVH, D = cs.D;
  const std::string tag = describe(cs, N);
  Tensor q = t.rand({N, H, D}), k = t.rand({N, KVH, D}), v = t.rand({N, KVH, D});
  Tensor out = poisoned(g, {N, H, D}, BF16), lse = poisoned(g, {N, H}, F32);
  Tensor rout = Tensor::empty({N, H, D}, F32), rlse = Tensor::empty({N, H}, F32);
  Tensor cu_d = t.i32(cu), cu_h = host_i32(cu);
  g.attention_forward(out, lse, t.bf(q), t.bf(k), t.bf(v), cu_d, max_len);
  cpu.attention_forward(rout, rlse, q, k, v, cu_h, max_len);
  expect_close(t.host(out), rout, 1e-2, 2e-2, "attention out " + tag);
  expect_close(t.host(lse), rlse, 2e-3, 1e-3, "attention lse " + tag);

  // Backward from the same (bf16-rounded) out and lse on both sides.
  Tensor out_b = host_clone(rout);
  for (int64_t i = 0; i < out_b.numel(); ++i) out_b.data<float>()[i] = round_bf16(out_b.data<float>()[i]);
  Tensor dout = t.rand({N, H, D});
  Tensor dq = poisoned(g, {N, H, D}, BF16), dk = poisoned(g, {N, KVH, D}, BF16), dv = poisoned(g, {N, KVH, D}, BF16);
  Tensor rdq = Tensor::empty({N, H, D}, F32), rdk = Tensor::empty({N, KVH, D}, F32),
         rdv = Tensor::empty({N, KVH, D}, F32);
  g.attention_backward(dq, dk, dv, t.bf(dout), t.bf(out_b), t.f32(rlse), t.bf(q), t.bf(k), t.bf(v), cu_d, max_len);
  cpu.attention_backward(rdq, rdk, rdv, dout, out_b, rlse, q, k, v, cu_h, max_len);
  t.close_bf16(t.host(dq), rdq, 1e-2, "attention dq " + tag);
  t.close_bf16(t.host(dk), rdk, 1e-2, "attention dk " + tag);
  t.close_bf16(t.host(dv), rdv, 1e-2, "attention dv " + tag);
}

// Tensor-core path: D = 64 and 128, GQA ratios 1, 2, 6, 7, documents that
// straddle tiles (64 rows in v1, 128 in v2, 32 per warp), end mid-tile, are
// empty or one token long.
const std::vector<AttnCase>& flash_cases() {
  static const std::vector<AttnCase> cases = {
      {{1}, 2, 1, 64},
      {{37}, 4, 4, 128},
      {{100, 1, 0, 200, 37}, 4, 2, 64},
      {{64, 64, 64}, 2, 2, 128},
      {{130, 65, 3}, 6, 1, 128},
      {{257}, 7, 1, 64},
      {{1, 1, 1, 1, 1}, 2, 2, 128},         // one-token documents only
      {{20, 20, 20, 70, 1}, 4, 2, 128},     // several documents inside one warp's 32 rows
      {{128, 1, 255}, 6, 1, 64},            // a document ending exactly on a v2 tile
      {{450, 171}, 12, 2, 128},  // Qwen2-1.5B head layout
      {{333, 1, 90}, 14, 2, 64},  // Qwen2-0.5B head layout
  };
  return cases;
}

TEST_F(CudaAttentionTest, FlashForwardBackward) {
  for (const AttnCase& cs : flash_cases()) {
    run_case(cs);
    if (HasFailure()) return;  // one failing shape is enough to read
  }
}

// Selects kernel variants for one test and restores the environment's choice.
struct VariantScope {
  VariantScope(int fwd, int bwd) {
    cuda::set_attention_variant(cuda::AttnPass::Forward, fwd);
    cuda::set_attention_variant(cuda::AttnPass::Backward, bwd);
  }
  ~VariantScope() {
    cuda::set_attention_variant(cuda::AttnPass::Forward, 0);
    cuda::set_attention_variant(cuda::AttnPass::Backward, 0);
  }
};

// Every forward / backward kernel variant (TEMPER_ATTN_FWD / _BWD) against
// the CPU oracle on the same shapes, plus a long document.
TEST_F(CudaAttentionTest, EveryVariantMatchesCpu) {
  for (int v = 1; v <= cuda::kAttnVariants; ++v) {
    SCOPED_TRACE("attention variant v" + std::to_string(v));
    VariantScope scope(v, v);
    for (const AttnCase& cs : flash_cases()) {
      run_case(cs);
      if (HasFailure()) return;
    }
    run_case({{1029}, 2, 1, 128});
    run_case({{700, 329}, 6, 1, 64});
    if (HasFailure()) return;
  }
}

// The variants compute the same f32 values up to summation order: outputs
// close to v1's (P is rounded to bf16 against a different running max where
// the key blocks start elsewhere), lse within f32 rounding.
TEST_F(CudaAttentionTest, VariantsAgreeWithV1) {
  const std::vector<AttnCase> cases = {{{300, 1, 45, 400}, 12, 2, 128}, {{513, 2, 250}, 14, 2, 64}};
  for (const AttnCase& cs : cases) {
    std::vector<int32_t> cu = {0};
    for (int32_t len : cs.docs) cu.push_back(cu.back() + len);
    const int64_t N = cu.back(), H = cs.H, KVH = cs.KVH, D = cs.D;
    const std::string tag = describe(cs, N);
    Tensor q = bf(rand({N, H, D})), k = bf(rand({N, KVH, D})), v = bf(rand({N, KVH, D}));
    Tensor dout = bf(rand({N, H, D})), cu_d = i32(cu);
    Tensor ref_out, ref_lse, ref_dq, ref_dk, ref_dv;
    for (int var = 1; var <= cuda::kAttnVariants; ++var) {
      VariantScope scope(var, var);
      Tensor out = poisoned(*g, {N, H, D}, BF16), lse = poisoned(*g, {N, H}, F32);
      g->attention_forward(out, lse, q, k, v, cu_d, int(N));
      Tensor dq = poisoned(*g, {N, H, D}, BF16), dk = poisoned(*g, {N, KVH, D}, BF16),
             dv = poisoned(*g, {N, KVH, D}, BF16);
      g->attention_backward(dq, dk, dv, dout, out, lse, q, k, v, cu_d, int(N));
      if (var == 1) {
        ref_out = host(out), ref_lse = host(lse), ref_dq = host(dq), ref_dk = host(dk), ref_dv = host(dv);
        continue;
      }
      const std::string vt = " v" + std::to_string(var) + " vs v1 " + tag;
      close_bf16(host(out), ref_out, 4e-3, "out" + vt);
      expect_close(host(lse), ref_lse, 1e-4, 1e-5, "lse" + vt);
      close_bf16(host(dq), ref_dq, 1e-2, "dq" + vt);
      close_bf16(host(dk), ref_dk, 1e-2, "dk" + vt);
      close_bf16(host(dv), ref_dv, 1e-2, "dv" + vt);
    }
    if (HasFailure()) return;
  }
}

// v3 is cuDNN's fused attention: in a build with cuDNN, D = 64 and 128 must
// really run on it (not fall back), over packed documents (empty and one-token
// ones included; one document of a multiple of 128 tokens takes the dense
// graph), GQA and MHA, and match the CPU oracle including lse; the default
// (no variant chosen) is v3 as well. Other head dims fall back.
TEST_F(CudaAttentionTest, CudnnServesV3) {
  if (!cuda::attention_cudnn_built()) GTEST_SKIP() << "built without cuDNN (TEMPER_CUDNN=OFF)";
  const std::vector<AttnCase> cases = {{{1000, 2000, 37}, 12, 2, 128},
                                       {{1500, 1500}, 14, 2, 64},
                                       {{2048}, 12, 2, 128},  // one document, multiple of 128: dense graph
                                       {{1536}, 14, 2, 64},
                                       {{100, 1, 0, 200, 37}, 4, 4, 64},
                                       {{513, 2, 250, 1, 1, 90, 7}, 6, 1, 128}};
  for (int explicit_v3 = 0; explicit_v3 <= 1; ++explicit_v3) {
    VariantScope scope(explicit_v3 ? 3 : 0, explicit_v3 ? 3 : 0);
    for (size_t i = explicit_v3 ? 4 : 0; i < cases.size(); ++i) {  // the long ones once
      run_case(cases[i]);
      EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Forward), 3) << describe(cases[i], 0);
      EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Backward), 3) << describe(cases[i], 0);
      if (HasFailure()) return;
    }
  }
  VariantScope scope(3, 3);
  run_case({{50, 13}, 2, 1, 32});
  EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Forward), 1);
  EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Backward), 1);
}

// The workspace guard: a GQA backward whose cuDNN workspace exceeds the limit
// runs v2 instead (forward stays on cuDNN), with the same results. (v2 when
// run.deterministic is off; on, the default, the fallback is the scalar kernels.)
TEST_F(CudaAttentionTest, CudnnWorkspaceGuardFallsBackToV2) {
  if (!cuda::attention_cudnn_built()) GTEST_SKIP() << "built without cuDNN (TEMPER_CUDNN=OFF)";
  struct Limit {
    explicit Limit(Kernels& k) : k(k) {
      cuda::set_cudnn_workspace_limit_mb(0);
      k.set_deterministic(false);
    }
    ~Limit() {
      cuda::set_cudnn_workspace_limit_mb(-1);
      k.set_deterministic(true);
    }
    Kernels& k;
  } limit(*g);
  run_case({{300, 1, 200}, 12, 2, 128});
  EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Forward), 3);
  EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Backward), 2);
}

// run.deterministic off: cuDNN's nondeterministic graphs (dQ through the f32
// accumulator), dense (one document, a multiple of 128) and ragged, against the
// CPU oracle; long deterministic runs fall back to them past the workspace guard.
TEST_F(CudaAttentionTest, CudnnNondeterministicGraphs) {
  if (!cuda::attention_cudnn_built()) GTEST_SKIP() << "built without cuDNN (TEMPER_CUDNN=OFF)";
  struct Nondet {
    explicit Nondet(Kernels& k) : k(k) { k.set_deterministic(false); }
    ~Nondet() { k.set_deterministic(true); }
    Kernels& k;
  } nondet(*g);
  const std::vector<AttnCase> cases = {
      {{2048}, 12, 2, 128}, {{1536}, 14, 2, 64}, {{1000, 2000, 37}, 12, 2, 128}, {{300, 1, 45}, 14, 2, 64}};
  for (const AttnCase& cs : cases) {
    run_case(cs);
    EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Forward), 3) << describe(cs, 0);
    EXPECT_EQ(cuda::attention_last_variant(cuda::AttnPass::Backward), 3) << describe(cs, 0);
    if (HasFailure()) return;
  }
}

// Head dims without a tensor-core kernel take the scalar fallback.
TEST_F(CudaAttentionTest, FallbackHeadDims) {
  const std::vector<AttnCase> cases = {{{50, 13}, 2, 1, 32}, {{33, 64, 31}, 6, 3, 96}, {{77}, 7, 1, 40}};
  for (const AttnCase& cs : cases) {
    run_case(cs);
    if (HasFailure()) return;
  }
}

// One long document: many key blocks per query tile, the causal skip, and
// sums over hundreds of keys; output rows far apart must differ (a kernel that
// wrote one tile everywhere would pass a tolerance check on constant data).
TEST_F(CudaAttentionTest, LongDocumentRowsDiffer) {
  const AttnCase cs{{1029}, 2, 1, 128};
  run_case(cs);
  const int64_t N = 1029, H = 2, D = 128;
  Tensor q = rand({N, H, D}), k = rand({N, 1, D}), v = rand({N, 1, D});
  Tensor out = poisoned(*g, {N, H, D}, BF16), lse = poisoned(*g, {N, H}, F32);
  g->attention_forward(out, lse, bf(q), bf(k), bf(v), i32({0, int32_t(N)}), int(N));
  Tensor o = host(out);
  // token 0 attends only to itself: its output is v[0] exactly (bf16)
  for (int64_t d = 0; d < D; ++d) EXPECT_EQ(o.data<float>()[d], v.data<float>()[d]) << "out[0, 0, " << d << "]";
  double diff = 0.0;
  for (int64_t d = 0; d < D; ++d) diff += std::fabs(o.data<float>()[(500 * H) * D + d] - o.data<float>()[(1000 * H) * D + d]);
  EXPECT_GT(diff, 1e-3);
}

// ---- attention_cached ------------------------------------------------------

struct CacheCase {
  int64_t S, T, H, KVH, D;
};

// Cache [S, T, KVH, D] with random bf16 values; positions at or past each
// slot's length get large keys so any read past pos[n] would dominate.
void fill_cache(Tensor& kc, Tensor& vc, const std::vector<int32_t>& lens, Rng& rng, const CacheCase& c) {
  kc = host_rand({c.S, c.T, c.KVH, c.D}, rng);
  vc = host_rand({c.S, c.T, c.KVH, c.D}, rng);
  for (int64_t s = 0; s < c.S; ++s)
    for (int64_t p = lens[size_t(s)]; p < c.T; ++p)
      for (int64_t x = 0; x < c.KVH * c.D; ++x) {
        kc.data<float>()[(s * c.T + p) * c.KVH * c.D + x] = 8.0f;
        vc.data<float>()[(s * c.T + p) * c.KVH * c.D + x] = 100.0f;
      }
}

TEST_F(CudaAttentionTest, CachedDecodeAndPrefill) {
  const std::vector<CacheCase> cases = {
      {3, 300, 12, 2, 128}, {4, 130, 14, 2, 64}, {2, 200, 4, 4, 64},
      {3, 70, 10, 1, 32},   // 10 query heads per kv head: two head chunks
      {2, 90, 6, 3, 80},    // D not a multiple of 32
  };
  for (const CacheCase& c : cases) {
    const std::string tag = "S=" + std::to_string(c.S) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
                            " KVH=" + std::to_string(c.KVH) + " D=" + std::to_string(c.D);
    std::vector<int32_t> lens;
    for (int64_t s = 0; s < c.S; ++s) lens.push_back(int32_t(s == 0 ? 1 : s == 1 ? c.T : 1 + (c.T * s) / (c.S + 1)));
    Tensor kc, vc;
    fill_cache(kc, vc, lens, rng, c);
    Tensor kc_d = bf(kc), vc_d = bf(vc);

    // decode: one token per slot at its last position (split-K path)
    {
      std::vector<int32_t> slot, pos;
      for (int64_t s = c.S - 1; s >= 0; --s) {  // not in slot order
        slot.push_back(int32_t(s));
        pos.push_back(lens[size_t(s)] - 1);
      }
      const int64_t N = int64_t(slot.size());
      Tensor q = rand({N, c.H, c.D});
      Tensor out = poisoned(*g, {N, c.H, c.D}, BF16), ref = Tensor::empty({N, c.H, c.D}, F32);
      g->attention_cached(out, bf(q), kc_d, vc_d, i32(slot), i32(pos));
      cpu->attention_cached(ref, q, kc, vc, host_i32(slot), host_i32(pos));
      expect_close(host(out), ref, 1e-2, 2e-2, "cached decode " + tag);
    }
    // prefill: every position of slot 1 (the full one), many tokens at once
    {
      std::vector<int32_t> slot, pos;
      for (int32_t p = 0; p < lens[1]; ++p) {
        slot.push_back(1);
        pos.push_back(p);
      }
      const int64_t N = int64_t(slot.size());
      Tensor q = rand({N, c.H, c.D});
      Tensor out = poisoned(*g, {N, c.H, c.D}, BF16), ref = Tensor::empty({N, c.H, c.D}, F32);
      g->attention_cached(out, bf(q), kc_d, vc_d, i32(slot), i32(pos));
      cpu->attention_cached(ref, q, kc, vc, host_i32(slot), host_i32(pos));
      expect_close(host(out), ref, 1e-2, 2e-2, "cached prefill " + tag);
    }
    if (HasFailure()) return;
  }
}

// The cache path agrees with attention_forward on the same document: the
// cache holds a prefix, and each token's cached attention equals its row of
// the full causal attention.
TEST_F(CudaAttentionTest, CachedMatchesForward) {
  const int64_t L = 150, H = 12, KVH = 2, D = 128, T = 160;
  Tensor q = rand({L, H, D}), k = rand({L, KVH, D}), v = rand({L, KVH, D});
  Tensor out = poisoned(*g, {L, H, D}, BF16), lse = poisoned(*g, {L, H}, F32);
  g->attention_forward(out, lse, bf(q), bf(k), bf(v), i32({0, int32_t(L)}), int(L));
  Tensor kc = Tensor::empty({1, T, KVH, D}, F32), vc = Tensor::empty({1, T, KVH, D}, F32);
  for (int64_t i = 0; i < T * KVH * D; ++i) {
    kc.data<float>()[i] = i < L * KVH * D ? k.data<float>()[i] : 0.0f;
    vc.data<float>()[i] = i < L * KVH * D ? v.data<float>()[i] : 0.0f;
  }
  std::vector<int32_t> slot(static_cast<size_t>(L), 0), pos(static_cast<size_t>(L), 0);
  for (int64_t i = 0; i < L; ++i) pos[size_t(i)] = int32_t(i);
  Tensor outc = poisoned(*g, {L, H, D}, BF16);
  g->attention_cached(outc, bf(q), bf(kc), bf(vc), i32(slot), i32(pos));
  // both are bf16 roundings of nearly the same f32 value: within 2 bf16 ulps
  expect_close(host(outc), host(out), 2e-3, 1.6e-2, "cached vs forward");
}

// A slot or position outside the cache gives NaN for that token only.
TEST_F(CudaAttentionTest, CachedBadSlotGivesNaN) {
  const CacheCase c{2, 300, 4, 2, 64};
  Tensor kc, vc;
  fill_cache(kc, vc, {300, 300}, rng, c);
  for (int split_case = 0; split_case < 2; ++split_case) {
    // 3 tokens (split-K over T = 300) or 300 tokens (one split on a big GPU); token 1 is out of range
    const int64_t N = split_case == 0 ? 3 : 300;
    std::vector<int32_t> slot(size_t(N), 0), pos(size_t(N), 5);
    slot[1] = 7;  // no such slot
    if (N > 3) pos[2] = 300;  // past T
    Tensor q = rand({N, c.H, c.D});
    Tensor out = poisoned(*g, {N, c.H, c.D}, BF16);
    g->attention_cached(out, bf(q), bf(kc), bf(vc), i32(slot), i32(pos));
    Tensor o = host(out);
    for (int64_t n = 0; n < N; ++n) {
      const bool bad = n == 1 || (N > 3 && n == 2);
      for (int64_t x = 0; x < c.H * c.D; ++x) {
        const float val = o.data<float>()[n * c.H * c.D + x];
        ASSERT_EQ(std::isnan(val), bad) << "token " << n << " element " << x << " (N = " << N << ")";
      }
    }
  }
}

}  // namespace
}  // namespace temper::gpu_test
