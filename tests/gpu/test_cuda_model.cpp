// Whole-model GPU tests: a small decoder on the CUDA backend against the same
// decoder on the CPU backend (the oracle): logits, per-token log-probs and every
// parameter gradient after one forward/backward, then 50 AdamW training steps
// whose loss curve must track the CPU one. Skips (exit 77) without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gpu/gpu_test_util.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "train/adamw.h"
#include "train/grad_clip.h"

namespace temper {
namespace {

ModelConfig small_gpu_config(bool qwen3) {
  ModelConfig c;
  c.vocab_size = 263;  // odd on purpose
  c.d_model = 96;
  c.n_layers = 2;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.ffn_dim = 200;
  c.init_std = 0.05f;
  c.qk_norm = qwen3;
  c.qkv_bias = !qwen3;
  c.tie_embeddings = qwen3;
  c.validate();
  return c;
}

std::vector<std::vector<int32_t>> docs_of(Rng& rng, const std::vector<int>& lens, int vocab) {
  std::vector<std::vector<int32_t>> docs;
  for (int n : lens) {
    std::vector<int32_t> d(n);
    for (auto& t : d) t = int32_t(rng.uniform() * vocab) % vocab;
    docs.push_back(d);
  }
  return docs;
}

// Copies the master weights of `src` (CPU, f32) into `dst` (GPU).
void copy_weights(Decoder& dst, Kernels& g, Decoder& src) {
  ASSERT_EQ(dst.params().size(), src.params().size());
  for (size_t i = 0; i < src.params().size(); ++i) g.copy(dst.params()[i].value, src.params()[i].value);
  dst.refresh_compute();
}

// Relative error of a GPU tensor against a CPU tensor: max|a-b| / max|b|.
double rel_err(Kernels& g, const Tensor& dev, Kernels& c, const Tensor& host) {
  auto a = to_host_f64(g, dev), b = to_host_f64(c, host);
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / std::max(den, 1e-30);
}

class CudaModelTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { TEMPER_REQUIRE_GPU(); }
};

TEST_P(CudaModelTest, LogitsLogpAndGradientsMatchCpu) {
  Kernels& g = *gpu_test::cuda_backend();
  auto c = make_cpu_kernels();
  const ModelConfig cfg = small_gpu_config(GetParam());
  Decoder mc(cfg, *c, DType::F32), mg(cfg, g, DType::F32);
  mc.init_random(5);
  copy_weights(mg, g, mc);
  Rng rng(9);
  auto docs = docs_of(rng, {37, 5, 90, 1, 64}, cfg.vocab_size);  // packed, odd lengths, one single-token doc
  Batch bc = make_lm_batch(*c, docs, cfg.vocab_size), bg = make_lm_batch(g, docs, cfg.vocab_size);

  // logits of a few rows (including the first and last token)
  std::vector<int64_t> rows = {0, 1, 40, 100, bc.n_tokens - 1};
  Tensor lc, lg;
  mc.logits_at(bc, rows, lc);
  mg.logits_at(bg, rows, lg);
  const double e_logits = rel_err(g, lg, *c, lc);
  std::printf("logits rel err %.3g\n", e_logits);
  EXPECT_LT(e_logits, 3e-2);

  Tensor pc, pg;
  mc.forward(bc, pc);
  mg.forward(bg, pg);
  const double e_logp = rel_err(g, pg, *c, pc);
  std::printf("logp rel err %.3g\n", e_logp);
  EXPECT_LT(e_logp, 2e-2);

  const std::vector<int32_t> tg = lm_targets(docs);
  const double n_loss = double(count_loss_tokens(tg));
  mc.zero_grad();
  mg.zero_grad();
  mc.backward(bc, sft_dlogp(*c, tg, n_loss, DType::F32));
  mg.backward(bg, sft_dlogp(g, tg, n_loss, DType::F32));
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < mc.params().size(); ++i) {
    const double e = rel_err(g, mg.params()[i].grad, *c, mc.params()[i].grad);
    if (e > worst) worst = e, worst_name = mc.params()[i].name;
  }
  std::printf("worst gradient rel err %.3g (%s)\n", worst, worst_name.c_str());
  EXPECT_LT(worst, 5e-2) << worst_name;
}

TEST_P(CudaModelTest, FiftyAdamWStepsTrackTheCpuLossCurve) {
  Kernels& g = *gpu_test::cuda_backend();
  auto c = make_cpu_kernels();
  const ModelConfig cfg = small_gpu_config(GetParam());
  Decoder mc(cfg, *c, DType::F32), mg(cfg, g, DType::F32);
  mc.init_random(17);
  copy_weights(mg, g, mc);
  auto refs = [](Decoder& m) {
    std::vector<ParamRef> r;
    for (auto& p : m.params()) r.push_back({p.name, p.value, p.grad, p.decay});
    return r;
  };
  AdamWConfig oc;
  AdamW oc_cpu(*c, refs(mc), oc), oc_gpu(g, refs(mg), oc);
  Rng rng(3);
  // a fixed small corpus, cycled: the loss must fall well below ln V
  std::vector<std::vector<std::vector<int32_t>>> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(docs_of(rng, {60, 33, 35}, 40));  // tokens < 40 of 263
  std::vector<double> lc, lg;
  for (int step = 0; step < 50; ++step) {
    const auto& docs = batches[step % batches.size()];
    const std::vector<int32_t> tg = lm_targets(docs);
    const double n_loss = double(count_loss_tokens(tg));
    for (int side = 0; side < 2; ++side) {
      Kernels& k = side ? g : *c;
      Decoder& m = side ? mg : mc;
      AdamW& opt = side ? oc_gpu : oc_cpu;
      Batch b = make_lm_batch(k, docs, cfg.vocab_size);
      Tensor logp;
      m.zero_grad();
      m.forward(b, logp);
      double loss = 0;
      for (double v : to_host_f64(k, logp)) loss -= v;
      (side ? lg : lc).push_back(loss / n_loss);
      m.backward(b, sft_dlogp(k, tg, n_loss, DType::F32));
      const double norm = grad_norm(k, opt.params());
      opt.step(3e-3, clip_scale(norm, 1.0));
      m.refresh_compute();
    }
  }
  // bf16 rounding makes the two runs drift apart slowly (training amplifies small
  // differences), so the curve is compared relative to the initial loss, and the
  // first steps tightly.
  double worst = 0, worst_early = 0;
  for (size_t i = 0; i < lc.size(); ++i) {
    const double d = std::fabs(lg[i] - lc[i]);
    worst = std::max(worst, d / lc.front());
    if (i < 10) worst_early = std::max(worst_early, d / lc[i]);
  }
  std::printf("loss cpu %.4f -> %.4f, gpu %.4f -> %.4f; worst |diff| / initial loss %.3g, first 10 steps rel %.3g\n",
              lc.front(), lc.back(), lg.front(), lg.back(), worst, worst_early);
  EXPECT_LT(lc.back(), 0.3 * lc.front());  // it learns
  EXPECT_LT(worst_early, 0.01);            // bf16 tracks f32 step by step at first
  EXPECT_LT(worst, 0.03);                  // and stays on the same curve
}

INSTANTIATE_TEST_SUITE_P(Qwen2AndQwen3, CudaModelTest, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "qwen3" : "qwen2"; });

}  // namespace
}  // namespace temper
