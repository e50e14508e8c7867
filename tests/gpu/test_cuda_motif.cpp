// CUDA vs the f32 CPU oracle for the Motif-architecture ops (PolyNorm, the
// differential-attention combination) on random bf16-representable inputs over
// several shapes, outputs poisoned with NaN first, accumulated gradients
// prefilled and compared as increments; then a whole small model with grouped
// differential attention + PolyNorm: log-probs, logits and every parameter
// gradient against the CPU backend. Without a GPU every test skips.
#include <algorithm>
#include <cmath>

#include "gpu_test_util.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/decoder.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32;
constexpr double kRtol = 2e-2;

class CudaMotifTest : public CudaVsCpuTest {
 protected:
  CudaMotifTest() : CudaVsCpuTest(909) {}
};

TEST_F(CudaMotifTest, PolyNormMatchesCpu) {
  for (int64_t N : {1, 37, 300})
    for (int64_t F : {64, 96, 1000}) {
      const std::string tag = "N=" + std::to_string(N) + " F=" + std::to_string(F);
      Tensor gu = host_rand({N, 2 * F}, rng, 0.1, 2.0), coef = host_rand({4}, rng, 0.2, 1.0);
      Tensor out = poisoned(*g, {N, F}, BF16), rstd = poisoned(*g, {N, 3}, F32);
      Tensor ref = Tensor::empty({N, F}, F32), rrstd = Tensor::empty({N, 3}, F32);
      Tensor d_gu = bf(gu), d_coef = bf(coef);
      g->polynorm_forward(out, rstd, d_gu, d_coef, 1e-6f);
      cpu->polynorm_forward(ref, rrstd, gu, coef, 1e-6f);
      expect_close_scaled(host(out), ref, kRtol, "polynorm_forward " + tag);
      expect_close(host(rstd), rrstd, 0.0, 1e-3, "polynorm rstd " + tag);
      Tensor dout = host_rand({N, F}, rng);
      Tensor c0 = host_rand({4}, rng);
      Tensor dgu = poisoned(*g, {N, 2 * F}, BF16), dcoef = f32(c0);
      Tensor rdgu = Tensor::empty({N, 2 * F}, F32), rdcoef = host_clone(c0);
      g->polynorm_backward(dgu, dcoef, bf(dout), d_gu, d_coef, rstd);
      cpu->polynorm_backward(rdgu, rdcoef, dout, gu, coef, rrstd);
      expect_close_scaled(host(dgu), rdgu, kRtol, "polynorm_backward dgu " + tag);
      expect_close_delta(host(dcoef), rdcoef, c0, kRtol, "polynorm_backward dcoef " + tag);
    }
}

TEST_F(CudaMotifTest, DiffCombineMatchesCpu) {
  struct Case {
    int64_t N, H, G, D, Dl;  // D: combined width (2 x head_dim in the released layout), Dl: lambda length
  };
  for (const Case c : {Case{1, 4, 4, 64, 32}, Case{37, 12, 4, 128, 64}, Case{300, 32, 8, 256, 128},
                       Case{50, 6, 2, 96, 48}, Case{20, 8, 1, 256, 128}, Case{9, 4, 2, 64, 64}}) {
    const std::string tag = "N=" + std::to_string(c.N) + " H=" + std::to_string(c.H) + " G=" + std::to_string(c.G) +
                            " D=" + std::to_string(c.D) + " Dl=" + std::to_string(c.Dl);
    const float lambda_init = 0.35f;
    Tensor a1 = host_rand({c.N, c.H, c.D}, rng), a2 = host_rand({c.N, c.G, c.D}, rng);
    Tensor lam = host_rand({4, c.Dl}, rng, 0.0, 0.1), w = host_rand({c.D}, rng, 0.5, 1.5);
    Tensor d_a1 = bf(a1), d_a2 = bf(a2), d_lam = bf(lam), d_w = bf(w);
    Tensor out = poisoned(*g, {c.N, c.H, c.D}, BF16), rstd = poisoned(*g, {c.N, c.H}, F32);
    Tensor ref = Tensor::empty({c.N, c.H, c.D}, F32), rrstd = Tensor::empty({c.N, c.H}, F32);
    g->diff_attn_combine_forward(out, rstd, d_a1, d_a2, d_lam, d_w, lambda_init, 1e-6f);
    cpu->diff_attn_combine_forward(ref, rrstd, a1, a2, lam, w, lambda_init, 1e-6f);
    expect_close_scaled(host(out), ref, kRtol, "diff_attn_combine_forward " + tag);
    expect_close(host(rstd), rrstd, 0.0, 1e-3, "combine rstd " + tag);
    Tensor dout = host_rand({c.N, c.H, c.D}, rng);
    Tensor l0 = host_rand({4, c.Dl}, rng), w0 = host_rand({c.D}, rng);
    Tensor da1 = poisoned(*g, {c.N, c.H, c.D}, BF16), da2 = poisoned(*g, {c.N, c.G, c.D}, BF16);
    Tensor dlam = f32(l0), dw = f32(w0);
    Tensor rda1 = Tensor::empty({c.N, c.H, c.D}, F32), rda2 = Tensor::empty({c.N, c.G, c.D}, F32);
    Tensor rdlam = host_clone(l0), rdw = host_clone(w0);
    g->diff_attn_combine_backward(da1, da2, dlam, dw, bf(dout), d_a1, d_a2, d_lam, d_w, rstd, lambda_init);
    cpu->diff_attn_combine_backward(rda1, rda2, rdlam, rdw, dout, a1, a2, lam, w, rrstd, lambda_init);
    expect_close_scaled(host(da1), rda1, kRtol, "combine da1 " + tag);
    expect_close_scaled(host(da2), rda2, kRtol, "combine da2 " + tag);
    expect_close_delta(host(dlam), rdlam, l0, kRtol, "combine dlam " + tag);
    expect_close_delta(host(dw), rdw, w0, kRtol, "combine dweight " + tag);
  }
}

TEST_F(CudaMotifTest, BadShapesThrow) {
  Tensor gu = g->alloc({4, 6}, BF16), coef = g->alloc({4}, BF16), out = g->alloc({4, 3}, BF16);
  Tensor rstd_bad = g->alloc({4}, F32), rstd32 = g->alloc({4, 3}, F32);
  EXPECT_THROW(g->polynorm_forward(out, rstd_bad, gu, coef, 1e-6f), Error);
  Tensor coef32 = g->alloc({4}, F32);
  EXPECT_THROW(g->polynorm_forward(out, rstd32, gu, coef32, 1e-6f), Error);  // coef must be bf16
  Tensor a1 = g->alloc({2, 4, 512}, BF16), a2 = g->alloc({2, 2, 512}, BF16), lam = g->alloc({4, 512}, BF16);
  Tensor w = g->alloc({512}, BF16), r = g->alloc({2, 4}, F32), dlam = g->alloc({4, 512}, F32);
  Tensor dw = g->alloc({512}, F32), da1 = g->alloc({2, 4, 512}, BF16), da2 = g->alloc({2, 2, 512}, BF16);
  EXPECT_THROW(g->diff_attn_combine_backward(da1, da2, dlam, dw, a1, a1, a2, lam, w, r, 0.2f), Error);  // D > 256
}

// A whole 2-layer model with grouped differential attention in the released layout
// (8 signal heads in groups of 4 with 2 noise heads, 2 + 2 key heads, value heads 2 x head_dim)
// and a PolyNorm MLP: log-probs, logits and all gradients of the CUDA decoder against the CPU
// decoder with the same weights (init does not depend on the backend), at head_dim 16 and at
// Motif-2-12.7B's head_dim 128 (the Hopper attention kernels' D).
class CudaMotifModel : public CudaMotifTest, public ::testing::WithParamInterface<int> {};

TEST_P(CudaMotifModel, WholeGdaPolyNormModelMatchesCpu) {
  ModelConfig c;
  c.vocab_size = 97;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = GetParam();
  c.ffn_dim = 96;
  c.init_std = 0.05f;
  c.tie_embeddings = false;
  c.attention = AttentionKind::GroupedDifferential;
  c.n_noise_heads = 2;
  c.mlp_activation = MlpActivation::PolyNorm;
  Decoder mc(c, *cpu, F32), mg(c, *g, F32);
  mc.init_random(5);
  mg.init_random(5);
  Rng r(8);
  std::vector<std::vector<int32_t>> docs(3);
  for (size_t d = 0; d < docs.size(); ++d)
    for (int i = 0; i < 40 + 17 * int(d); ++i) docs[d].push_back(int32_t(r.below(97)));
  Batch bc = make_lm_batch(*cpu, docs, 97), bg = make_lm_batch(*g, docs, 97);
  const int64_t n = bc.n_tokens;
  std::vector<double> coef(size_t(n), -1.0 / double(n));
  Tensor lpc, lpg;
  mc.zero_grad();
  mg.zero_grad();
  mc.forward(bc, lpc);
  mg.forward(bg, lpg);
  mc.backward(bc, to_device(*cpu, coef, F32));
  mg.backward(bg, to_device(*g, coef, F32));
  const auto a = to_host_f64(*g, lpg), b = to_host_f64(*cpu, lpc);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  EXPECT_LT(worst, 0.05) << "log-prob max abs difference";
  for (size_t j = 0; j < mc.params().size(); ++j) {
    const auto gg = to_host_f64(*g, mg.params()[j].grad), gc = to_host_f64(*cpu, mc.params()[j].grad);
    double num = 0, den = 0;
    for (size_t i = 0; i < gc.size(); ++i) {
      num += (gg[i] - gc[i]) * (gg[i] - gc[i]);
      den += gc[i] * gc[i];
    }
    // bf16 activations: ~1e-2 expected; the small vectors (norm weights, lambda, PolyNorm
    // coefficients) sum over every token and get a looser bound. A wrong formula gives ~1.
    const double tol = gc.size() >= 256 ? 0.05 : 0.1;
    EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), tol) << mc.params()[j].name << " relative gradient error";
    EXPECT_GT(den, 0.0) << mc.params()[j].name;
  }
  Tensor logits_g, logits_c;
  mg.logits_at(bg, {0, 39, 57, n - 1}, logits_g);
  mc.logits_at(bc, {0, 39, 57, n - 1}, logits_c);
  const auto lg = to_host_f64(*g, logits_g), lc = to_host_f64(*cpu, logits_c);
  double lmax = 0, lerr = 0;
  for (size_t i = 0; i < lc.size(); ++i) {
    lmax = std::max(lmax, std::fabs(lc[i]));
    lerr = std::max(lerr, std::fabs(lg[i] - lc[i]));
  }
  EXPECT_LT(lerr, 0.03 * lmax + 0.02) << "logits";
}

INSTANTIATE_TEST_SUITE_P(HeadDims, CudaMotifModel, ::testing::Values(16, 128),
                         [](const auto& pi) { return "D" + std::to_string(pi.param); });

}  // namespace
}  // namespace temper::gpu_test
