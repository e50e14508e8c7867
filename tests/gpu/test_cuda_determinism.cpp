// Run-to-run determinism of the CUDA backward ops that reduce over rows or
// tokens (the ones that used float atomics before): each op runs twice on the
// same inputs, from the same prefilled gradient, and the two results must be
// bitwise equal; each is also checked against the f32 CPU oracle. Shapes are
// large enough for many blocks to contribute to one element (thousands of rows,
// tokens repeated hundreds of times), which is where atomics showed run-to-run
// differences. Without a GPU every test skips.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "gpu_test_util.h"
#include "kernels/cuda/attention_variant.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32;

class CudaDeterminismTest : public CudaVsCpuTest {
 protected:
  CudaDeterminismTest() : CudaVsCpuTest(4242) {}
};

// Bitwise equality of two host tensors (f32 after download).
void expect_bitwise(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.numel(), b.numel()) << what;
  int64_t diff = 0, first = -1;
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::memcmp(a.data<float>() + i, b.data<float>() + i, sizeof(float)) != 0) {
      if (first < 0) first = i;
      ++diff;
    }
  }
  EXPECT_EQ(diff, 0) << what << ": " << diff << " of " << a.numel() << " elements differ between two runs; first at ["
                     << first << "]: " << (first >= 0 ? a.data<float>()[first] : 0.0f) << " vs "
                     << (first >= 0 ? b.data<float>()[first] : 0.0f);
}

TEST_F(CudaDeterminismTest, EmbeddingBackward) {
  struct Case {
    int64_t N, V, C;
  };
  // few tokens repeated many times (byte-level), a large vocabulary, odd widths
  // (scalar path), widths over one 256-column chunk, ids outside [0, V) skipped.
  for (const Case c : {Case{8192, 50, 256}, Case{8192, 264, 128}, Case{4099, 5000, 1536}, Case{3000, 7, 100},
                       Case{1, 10, 64}, Case{2048, 3, 520}}) {
    const std::string tag = "N=" + std::to_string(c.N) + " V=" + std::to_string(c.V) + " C=" + std::to_string(c.C);
    std::vector<int32_t> ids(c.N);
    for (auto& x : ids) x = static_cast<int32_t>(rng.below(uint64_t(c.V)));
    if (c.N > 10) ids[3] = -1, ids[7] = int32_t(c.V);  // skipped by both backends
    Tensor dout = rand({c.N, c.C}), before = rand({c.V, c.C});
    Tensor d_dout = bf(dout), d_ids = i32(ids);
    Tensor dw1 = f32(before), dw2 = f32(before);
    g->embedding_backward(dw1, d_dout, d_ids);
    g->embedding_backward(dw2, d_dout, d_ids);
    const Tensor h1 = host(dw1), h2 = host(dw2);
    expect_bitwise(h1, h2, "embedding_backward " + tag);
    // The CPU oracle refuses ids outside [0, V): it gets id 0 with a zero row of
    // dout there (adding +0 changes nothing).
    std::vector<int32_t> cpu_ids = ids;
    Tensor cpu_dout = host_clone(dout);
    for (int64_t n = 0; n < c.N; ++n)
      if (ids[n] < 0 || ids[n] >= c.V) {
        cpu_ids[n] = 0;
        for (int64_t j = 0; j < c.C; ++j) cpu_dout.data<float>()[n * c.C + j] = 0.0f;
      }
    Tensor ref = host_clone(before);
    cpu->embedding_backward(ref, cpu_dout, host_i32(cpu_ids));
    expect_close_delta(h1, ref, before, 1e-5, "embedding_backward vs cpu " + tag);
  }
}

TEST_F(CudaDeterminismTest, RmsNormBackward) {
  // C = 128: 8 warps; 1536: 8 warps, vectorised; 4000: 2 warps; 13000: the two-kernel path; 13: scalar
  for (int64_t C : {128, 1536, 4000, 13000, 13}) {
    const int64_t N = C >= 4000 ? 2000 : 8192;
    const std::string tag = "N=" + std::to_string(N) + " C=" + std::to_string(C);
    Tensor x = rand({N, C}), w = rand({C}), dout = rand({N, C}), dw0 = rand({C});
    Tensor out = g->alloc({N, C}, BF16), rstd = g->alloc({N}, F32);
    Tensor d_x = bf(x), d_w = bf(w), d_dout = bf(dout);
    g->rmsnorm_forward(out, rstd, d_x, d_w, 1e-6f);
    Tensor dx1 = g->alloc({N, C}, BF16), dx2 = g->alloc({N, C}, BF16), dw1 = f32(dw0), dw2 = f32(dw0);
    g->rmsnorm_backward(dx1, false, dw1, d_dout, d_x, d_w, rstd);
    g->rmsnorm_backward(dx2, false, dw2, d_dout, d_x, d_w, rstd);
    const Tensor h1 = host(dw1);
    expect_bitwise(h1, host(dw2), "rmsnorm dweight " + tag);
    expect_bitwise(host(dx1), host(dx2), "rmsnorm dinp " + tag);
    Tensor rdx = Tensor::empty({N, C}, F32), rdw = host_clone(dw0);
    cpu->rmsnorm_backward(rdx, false, rdw, dout, x, w, host(rstd));
    expect_close_delta(h1, rdw, dw0, 1e-3, "rmsnorm dweight vs cpu " + tag);
  }
}

TEST_F(CudaDeterminismTest, MatmulBiasBackward) {
  for (int64_t OC : {300, 2048, 4}) {
    const int64_t rows = 8192, C = 64;
    const std::string tag = "rows=" + std::to_string(rows) + " OC=" + std::to_string(OC);
    Tensor x = rand({rows, C}), W = rand({OC, C}), dout = rand({rows, OC}), db0 = rand({OC}), dw0 = rand({OC, C});
    Tensor d_x = bf(x), d_W = bf(W), d_dout = bf(dout);
    Tensor dw1 = f32(dw0), dw2 = f32(dw0), db1 = f32(db0), db2 = f32(db0);
    g->matmul_backward(nullptr, false, dw1, &db1, d_dout, d_x, d_W);
    g->matmul_backward(nullptr, false, dw2, &db2, d_dout, d_x, d_W);
    const Tensor h1 = host(db1);
    expect_bitwise(h1, host(db2), "matmul dbias " + tag);
    expect_bitwise(host(dw1), host(dw2), "matmul dweight " + tag);
    Tensor rdw = host_clone(dw0), rdb = host_clone(db0);
    cpu->matmul_backward(nullptr, false, rdw, &rdb, dout, x, W);
    expect_close_delta(h1, rdb, db0, 1e-3, "matmul dbias vs cpu " + tag);
  }
}

TEST_F(CudaDeterminismTest, PolyNormBackward) {
  const int64_t N = 6000, F = 256;  // more rows than the kernel's 4096 blocks: every block loops
  Tensor gu = host_rand({N, 2 * F}, rng, 0.1, 2.0), coef = host_rand({4}, rng, 0.2, 1.0);
  Tensor dout = rand({N, F}), c0 = rand({4});
  Tensor d_gu = bf(gu), d_coef = bf(coef), d_dout = bf(dout);
  Tensor out = g->alloc({N, F}, BF16), rstd = g->alloc({N, 3}, F32);
  g->polynorm_forward(out, rstd, d_gu, d_coef, 1e-6f);
  Tensor dgu1 = g->alloc({N, 2 * F}, BF16), dgu2 = g->alloc({N, 2 * F}, BF16), dc1 = f32(c0), dc2 = f32(c0);
  g->polynorm_backward(dgu1, dc1, d_dout, d_gu, d_coef, rstd);
  g->polynorm_backward(dgu2, dc2, d_dout, d_gu, d_coef, rstd);
  const Tensor h1 = host(dc1);
  expect_bitwise(h1, host(dc2), "polynorm dcoef");
  expect_bitwise(host(dgu1), host(dgu2), "polynorm dgu");
  Tensor rdgu = Tensor::empty({N, 2 * F}, F32), rdc = host_clone(c0), rrstd = Tensor::empty({N, 3}, F32),
         rout = Tensor::empty({N, F}, F32);
  cpu->polynorm_forward(rout, rrstd, gu, coef, 1e-6f);
  cpu->polynorm_backward(rdgu, rdc, dout, gu, coef, rrstd);
  expect_close_delta(h1, rdc, c0, 2e-2, "polynorm dcoef vs cpu");
}

TEST_F(CudaDeterminismTest, DiffAttnCombineBackward) {
  const int64_t N = 3000, H = 8, G = 2, D = 128, Dl = 64;
  const float lambda_init = 0.35f;
  Tensor a1 = rand({N, H, D}), a2 = rand({N, G, D}), lam = host_rand({4, Dl}, rng, 0.0, 0.1);
  Tensor w = host_rand({D}, rng, 0.5, 1.5), dout = rand({N, H, D}), l0 = rand({4, Dl}), w0 = rand({D});
  Tensor d_a1 = bf(a1), d_a2 = bf(a2), d_lam = bf(lam), d_w = bf(w), d_dout = bf(dout);
  Tensor out = g->alloc({N, H, D}, BF16), rstd = g->alloc({N, H}, F32);
  g->diff_attn_combine_forward(out, rstd, d_a1, d_a2, d_lam, d_w, lambda_init, 1e-6f);
  Tensor da1a = g->alloc({N, H, D}, BF16), da2a = g->alloc({N, G, D}, BF16), dla = f32(l0), dwa = f32(w0);
  Tensor da1b = g->alloc({N, H, D}, BF16), da2b = g->alloc({N, G, D}, BF16), dlb = f32(l0), dwb = f32(w0);
  g->diff_attn_combine_backward(da1a, da2a, dla, dwa, d_dout, d_a1, d_a2, d_lam, d_w, rstd, lambda_init);
  g->diff_attn_combine_backward(da1b, da2b, dlb, dwb, d_dout, d_a1, d_a2, d_lam, d_w, rstd, lambda_init);
  const Tensor hw = host(dwa), hl = host(dla);
  expect_bitwise(hw, host(dwb), "combine dweight");
  expect_bitwise(hl, host(dlb), "combine dlam");
  expect_bitwise(host(da2a), host(da2b), "combine da2");
  Tensor rda1 = Tensor::empty({N, H, D}, F32), rda2 = Tensor::empty({N, G, D}, F32), rdl = host_clone(l0),
         rdw = host_clone(w0), rout = Tensor::empty({N, H, D}, F32), rrstd = Tensor::empty({N, H}, F32);
  cpu->diff_attn_combine_forward(rout, rrstd, a1, a2, lam, w, lambda_init, 1e-6f);
  cpu->diff_attn_combine_backward(rda1, rda2, rdl, rdw, dout, a1, a2, lam, w, rrstd, lambda_init);
  expect_close_delta(hw, rdw, w0, 2e-2, "combine dweight vs cpu");
  expect_close_delta(hl, rdl, l0, 2e-2, "combine dlam vs cpu");
}

// The attention backward with run.deterministic on (the default): head dims 64
// and 128 (cuDNN's deterministic graph where it runs, else the atomic-free
// kernels) and 32 (scalar kernels), GQA, several documents. Also reports which
// variant served, so the log shows whether cuDNN took the deterministic graph.
TEST_F(CudaDeterminismTest, AttentionBackward) {
  struct Case {
    std::vector<int32_t> docs;
    int64_t H, KVH, D;
  };
  for (const Case& c : {Case{{1000, 2000, 37}, 12, 2, 128}, Case{{1500, 700}, 14, 2, 64}, Case{{2048}, 4, 2, 32}}) {
    std::vector<int32_t> cu = {0};
    int max_len = 1;
    for (int32_t len : c.docs) cu.push_back(cu.back() + len), max_len = std::max(max_len, int(len));
    const int64_t N = cu.back();
    const std::string tag = "N=" + std::to_string(N) + " H=" + std::to_string(c.H) + " KVH=" + std::to_string(c.KVH) +
                            " D=" + std::to_string(c.D);
    Tensor q = bf(rand({N, c.H, c.D})), k = bf(rand({N, c.KVH, c.D})), v = bf(rand({N, c.KVH, c.D}));
    Tensor dout = bf(rand({N, c.H, c.D})), cu_d = i32(cu);
    Tensor out = g->alloc({N, c.H, c.D}, BF16), lse = g->alloc({N, c.H}, F32);
    g->attention_forward(out, lse, q, k, v, cu_d, max_len);
    Tensor r[2][3];
    for (auto& run : r) {
      run[0] = g->alloc({N, c.H, c.D}, BF16), run[1] = g->alloc({N, c.KVH, c.D}, BF16);
      run[2] = g->alloc({N, c.KVH, c.D}, BF16);
      g->attention_backward(run[0], run[1], run[2], dout, out, lse, q, k, v, cu_d, max_len);
    }
    std::printf("attention backward %s: variant %d\n", tag.c_str(),
                cuda::attention_last_variant(cuda::AttnPass::Backward));
    expect_bitwise(host(r[0][0]), host(r[1][0]), "attention dq " + tag);
    expect_bitwise(host(r[0][1]), host(r[1][1]), "attention dk " + tag);
    expect_bitwise(host(r[0][2]), host(r[1][2]), "attention dv " + tag);
  }
}

}  // namespace
}  // namespace temper::gpu_test
