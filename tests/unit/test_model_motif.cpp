// Whole-model tests of the Motif architecture (grouped differential attention +
// PolyNorm MLP) on the CPU backend: finite-difference gradients of every
// parameter in f64, checkpointing policies bit-identical, the KV-cached
// inference engine equal to the decoder, parameter counts, FLOPs and config errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/decoder.h"
#include "model/inference.h"
#include "model/memory_plan.h"
#include "unit/model_test_util.h"

namespace temper {
namespace {

struct Shape_ {
  AttentionKind attn;
  int H, G, KVH;
  MlpActivation act;
  const char* name;
};

void PrintTo(const Shape_& s, std::ostream* os) { *os << s.name; }  // readable ctest names

ModelConfig motif_config(const Shape_& s) {
  ModelConfig c;
  c.vocab_size = 37;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = s.H;
  c.n_kv_heads = s.KVH;
  c.head_dim = 4;
  c.ffn_dim = 24;
  c.rope_theta = 100.0f;
  c.init_std = 0.3f;
  c.tie_embeddings = false;
  c.attention = s.attn;
  c.n_noise_heads = s.G;
  c.mlp_activation = s.act;
  return c;
}

class MotifGrad : public ::testing::TestWithParam<Shape_> {};

TEST_P(MotifGrad, FiniteDifferenceEveryParameterF64) {
  auto k = make_cpu_kernels();
  ModelConfig cfg = motif_config(GetParam());
  Decoder m(cfg, *k, DType::F64);
  m.init_random(7);
  randomize_norms_and_biases(m, 8);
  Rng rng(3);
  Batch b = make_lm_batch(*k, {random_doc(rng, 7, 37), random_doc(rng, 9, 37), random_doc(rng, 5, 37)}, 37);
  std::vector<double> r(size_t(b.n_tokens));
  for (auto& x : r) x = rng.uniform() * 2.0 - 0.5;
  EXPECT_EQ(check_every_param_fd(*k, m, b, r, rng), 4 * int(m.params().size()));
  // 13 standard tensors per layer minus 3 biases/2 qk norms, + lambda, head_norm (+ polynorm): the released
  // layout keeps both query paths in q, both key paths in k and both value halves in v
  const size_t per_layer = 8 + (cfg.differential() ? 2 : 0) + (cfg.mlp_activation == MlpActivation::PolyNorm ? 1 : 0);
  EXPECT_EQ(m.params().size(), 3 + 2 * per_layer);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MotifGrad,
    ::testing::Values(Shape_{AttentionKind::GroupedDifferential, 4, 2, 2, MlpActivation::PolyNorm, "gda2_polynorm"},
                      Shape_{AttentionKind::GroupedDifferential, 6, 2, 1, MlpActivation::PolyNorm, "gda3_kv1"},
                      Shape_{AttentionKind::Differential, 4, 4, 2, MlpActivation::SwiGLU, "diff_swiglu"},
                      Shape_{AttentionKind::Standard, 4, 0, 2, MlpActivation::PolyNorm, "std_polynorm"}),
    [](const auto& pi) { return std::string(pi.param.name); });

const Shape_ kGda{AttentionKind::GroupedDifferential, 4, 2, 2, MlpActivation::PolyNorm, "gda"};

TEST(MotifModel, CheckpointingGivesIdenticalGradients) {
  auto k = make_cpu_kernels();
  ModelConfig cfg = motif_config(kGda);
  Rng rng(5);
  Batch b = make_lm_batch(*k, {random_doc(rng, 9, 37), random_doc(rng, 7, 37)}, 37);
  std::vector<double> coef(size_t(b.n_tokens));
  for (auto& c : coef) c = rng.normal();
  Tensor dlogp = to_device(*k, coef, DType::F64);
  std::vector<std::vector<double>> ref;
  std::vector<double> ref_logp;
  for (Checkpointing pol : {Checkpointing::None, Checkpointing::Selective, Checkpointing::Full}) {
    Decoder m(cfg, *k, DType::F64);
    m.init_random(3);
    randomize_norms_and_biases(m, 4);
    m.set_checkpointing(pol);
    m.zero_grad();
    Tensor logp;
    m.forward(b, logp);
    m.backward(b, dlogp);
    EXPECT_EQ(m.allocated_activation_bytes(), m.activation_bytes(b.n_tokens));
    std::vector<double> lp = to_host_f64(*k, logp);
    if (pol == Checkpointing::None) {
      ref_logp = lp;
      for (auto& p : m.params()) ref.push_back(to_host_f64(*k, p.grad));
    } else {
      EXPECT_EQ(lp, ref_logp) << checkpointing_name(pol);
      for (size_t j = 0; j < m.params().size(); ++j)
        ASSERT_EQ(to_host_f64(*k, m.params()[j].grad), ref[j]) << checkpointing_name(pol) << " " << m.params()[j].name;
    }
  }
}

TEST(MotifModel, CachedInferenceMatchesDecoder) {
  auto k = make_cpu_kernels();
  Decoder m(motif_config(kGda), *k, DType::F64);
  m.init_random(2);
  randomize_norms_and_biases(m, 9);
  Rng rng(6);
  std::vector<std::vector<int32_t>> prompts = {random_doc(rng, 7, 37), random_doc(rng, 3, 37)};
  InferenceEngine e(m, *k, 2, 16, /*max_step_tokens=*/4);  // chunked prefill
  const auto got = to_host_f64(*k, e.prefill({0, 1}, prompts));
  Tensor ref;
  m.logits_at(make_lm_batch(*k, prompts, 37), {6, 9}, ref);
  const auto want = to_host_f64(*k, ref);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-10) << i;
  // one decode step after a shared prefix (copy_slot copies the noise-key cache too)
  e.copy_slot(1, 0, 7);
  const auto d = to_host_f64(*k, e.decode({1}, {5}, {7}));
  std::vector<int32_t> longer = prompts[0];
  longer.push_back(5);
  Tensor ref2;
  m.logits_at(make_lm_batch(*k, {longer}, 37), {7}, ref2);
  const auto want2 = to_host_f64(*k, ref2);
  for (size_t i = 0; i < d.size(); ++i) EXPECT_NEAR(d[i], want2[i], 1e-10) << i;
}

TEST(MotifModel, CountsFlopsAndInit) {
  auto k = make_cpu_kernels();
  ModelConfig c = motif_config(kGda);
  Decoder m(c, *k, DType::F32);
  int64_t total = 0;
  for (auto& p : m.params()) total += p.value.numel();
  EXPECT_EQ(total, c.param_count());
  // by hand, per layer (H 4 signal + G 2 noise heads, KVH 2, D 4, C 16): q [6*4, 16] 384, k and v [2*2*4, 16]
  // 256 each, o [16, 4*2*4] 512, lambda 4*4, sub-layer norm 8 = 1432 against 768 standard; PolyNorm 4
  ModelConfig plain = c;
  plain.attention = AttentionKind::Standard;
  plain.n_noise_heads = 0;
  plain.mlp_activation = MlpActivation::SwiGLU;
  EXPECT_EQ(c.attention_params_per_layer(), 1432);
  EXPECT_EQ(c.param_count() - plain.param_count(), 2 * (1432 - 768 + 4));
  // FLOPs: 1408 matmul weights per layer against 768; attention 9 (H+G) D (s+1) against 6 H D (s+1)
  EXPECT_DOUBLE_EQ(c.flops_per_token(9) - plain.flops_per_token(9),
                   6.0 * 2 * (1408 - 768) + 9.0 * 2 * 24 * 10 - 6.0 * 2 * 16 * 10);
  // init: lambda_init by depth, PolyNorm coefficients 1/3 and bias 0
  Decoder m64(c, *k, DType::F64);
  m64.init_random(1);
  EXPECT_EQ(to_host_f64(*k, m64.param("layers.1.mlp.polynorm").value),
            (std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3, 0.0}));
  // the released schedule 0.8 - 0.6 exp(-0.3 (l - 1)) of the 0-based layer l
  EXPECT_NEAR(c.lambda_init(0), 0.8 - 0.6 * std::exp(0.3), 1e-7);
  EXPECT_NEAR(c.lambda_init(1), 0.2, 1e-7);
  EXPECT_NEAR(c.lambda_init(2), 0.8 - 0.6 * std::exp(-0.3), 1e-7);
  c.diff_lambda_init = 0.5f;
  EXPECT_EQ(c.lambda_init(7), 0.5f);
  EXPECT_NE(c.summary().find("grouped_differential"), std::string::npos);
}

TEST(MotifModel, MemoryPlanMatchesDecoderBuffers) {
  auto k = make_cpu_kernels();
  for (const Shape_& s : {kGda, Shape_{AttentionKind::Differential, 4, 4, 2, MlpActivation::SwiGLU, "diff"},
                          Shape_{AttentionKind::Standard, 4, 0, 2, MlpActivation::PolyNorm, "std"}}) {
    const ModelConfig c = motif_config(s);
    for (DType dt : {DType::F32, DType::F64}) {
      Decoder m(c, *k, dt);
      for (int64_t n : {1, 37})
        EXPECT_EQ(MemoryPlan::activation_bytes(c, n, m.compute_dtype(), m.stat_dtype()), m.activation_bytes(n))
            << s.name;
    }
  }
}

TEST(MotifModel, ConfigErrors) {
  auto expect_error = [](ModelConfig bad, const std::string& needle) {
    try {
      bad.validate();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  ModelConfig c = motif_config(kGda);
  EXPECT_NO_THROW(c.validate());
  ModelConfig b = c;
  b.n_noise_heads = 3;
  expect_error(b, "multiple of n_noise_heads");
  b = c;
  b.n_kv_heads = 4;
  expect_error(b, "must be a multiple of n_kv_heads");
  b = c;
  b.n_noise_heads = 0;
  expect_error(b, "needs n_noise_heads > 0");
  b = c;
  b.attention = AttentionKind::Differential;
  expect_error(b, "n_noise_heads = n_heads");
  b = c;
  b.qk_norm = true;
  expect_error(b, "does not support qk_norm");
  b = c;
  b.attention = AttentionKind::Standard;
  expect_error(b, "only used by differential");
  EXPECT_THROW(attention_kind_from_name("gda"), Error);
  EXPECT_THROW(mlp_activation_from_name("gelu"), Error);
  EXPECT_EQ(attention_kind_from_name("grouped_differential"), AttentionKind::GroupedDifferential);
}

}  // namespace
}  // namespace temper
