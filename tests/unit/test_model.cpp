// Tests of src/model: config checks and counts, whole-model finite-difference
// gradients (f64), packing invariance, gradient accumulation, buffers, logits.
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
#include "unit/model_test_util.h"

namespace temper {
namespace {

ModelConfig small_config(bool tied) {
  ModelConfig c;
  c.vocab_size = 37;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.ffn_dim = 24;
  c.rope_theta = 100.0f;
  c.norm_eps = 1e-6f;
  c.init_std = 0.3f;  // large enough that every nonlinearity matters in the checks
  c.qk_norm = true;
  c.qkv_bias = true;
  c.tie_embeddings = tied;
  return c;
}

class ModelGrad : public ::testing::TestWithParam<bool> {};

TEST_P(ModelGrad, FiniteDifferenceEveryParameterF64) {
  auto k = make_cpu_kernels();
  ModelConfig cfg = small_config(GetParam());
  Decoder m(cfg, *k, DType::F64);
  m.init_random(7);
  randomize_norms_and_biases(m, 8);
  Rng rng(3);
  // 24 tokens in 3 documents; a few extra tokens without a target
  std::vector<std::vector<int32_t>> docs = {random_doc(rng, 7, 37), random_doc(rng, 9, 37), random_doc(rng, 8, 37)};
  std::vector<int32_t> tokens, targets, positions, cu{0};
  for (auto& d : docs) {
    for (size_t i = 0; i < d.size(); ++i) {
      tokens.push_back(d[i]);
      targets.push_back(i + 1 < d.size() ? d[i + 1] : -1);
      positions.push_back(int32_t(i));
    }
    cu.push_back(int32_t(tokens.size()));
  }
  targets[2] = -1;
  targets[10] = -1;
  Batch b = make_batch(*k, tokens, targets, positions, cu, cfg.vocab_size);
  std::vector<double> r(tokens.size());
  for (auto& x : r) x = rng.uniform() * 2.0 - 0.5;  // non-uniform, mixed signs

  const int checked = check_every_param_fd(*k, m, b, r, rng);
  EXPECT_EQ(checked, 4 * int(m.params().size()));
  EXPECT_EQ(m.params().size(), size_t(cfg.tie_embeddings ? 28 : 29));
}

INSTANTIATE_TEST_SUITE_P(TiedAndUntied, ModelGrad, ::testing::Values(true, false),
                         [](const auto& pi) { return pi.param ? std::string("tied") : std::string("untied"); });

TEST(Model, PackingInvarianceF64) {
  auto k = make_cpu_kernels();
  ModelConfig cfg = small_config(false);
  Decoder m(cfg, *k, DType::F64);
  m.init_random(11);
  randomize_norms_and_biases(m, 12);
  Rng rng(5);
  auto a = random_doc(rng, 8, 37), before = random_doc(rng, 5, 37), after = random_doc(rng, 6, 37);

  Tensor lp_alone, lp_packed, lp_merged;
  m.forward(make_lm_batch(*k, {a}, cfg.vocab_size), lp_alone);
  std::vector<double> alone = to_host_f64(*k, lp_alone);
  m.forward(make_lm_batch(*k, {before, a, after}, cfg.vocab_size), lp_packed);
  std::vector<double> packed = to_host_f64(*k, lp_packed);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(packed[before.size() + i], alone[i], 1e-12) << "token " << i;

  // The check has teeth: without the document boundary (one merged document, positions
  // continuing) the same tokens get different log-probabilities.
  std::vector<int32_t> toks(before), tg, pos;
  toks.insert(toks.end(), a.begin(), a.end());
  for (size_t i = 0; i < toks.size(); ++i) {
    tg.push_back(i + 1 < toks.size() ? toks[i + 1] : -1);
    pos.push_back(int32_t(i));
  }
  m.forward(make_batch(*k, toks, tg, pos, {0, int32_t(toks.size())}), lp_merged);
  std::vector<double> merged = to_host_f64(*k, lp_merged);
  double maxdiff = 0;
  for (size_t i = 0; i + 1 < a.size(); ++i)
    maxdiff = std::max(maxdiff, std::fabs(merged[before.size() + i] - alone[i]));
  EXPECT_GT(maxdiff, 1e-6);
}

TEST(Model, GradientsAccumulate) {
  auto k = make_cpu_kernels();
  ModelConfig cfg = small_config(true);
  Decoder m(cfg, *k, DType::F64);
  m.init_random(1);
  Rng rng(2);
  Batch b = make_lm_batch(*k, {random_doc(rng, 10, 37), random_doc(rng, 6, 37)}, cfg.vocab_size);
  Tensor dlogp = to_device(*k, std::vector<double>(16, -1.0 / 14), DType::F64);
  m.zero_grad();
  Tensor logp;
  m.forward(b, logp);
  m.backward(b, dlogp);
  std::vector<std::vector<double>> once;
  for (auto& p : m.params()) once.push_back(to_host_f64(*k, p.grad));
  m.backward(b, dlogp);
  for (size_t j = 0; j < m.params().size(); ++j) {
    std::vector<double> twice = to_host_f64(*k, m.params()[j].grad);
    for (size_t i = 0; i < twice.size(); ++i)
      ASSERT_NEAR(twice[i], 2 * once[j][i], 1e-12 * (1 + std::fabs(once[j][i]))) << m.params()[j].name;
  }
  m.zero_grad();
  for (auto& p : m.params()) EXPECT_EQ(k->sum_squares(p.grad), 0.0) << p.name;
}

// Selective and full activation checkpointing recompute exactly what "none" keeps:
// logp and every gradient are bit-identical, and they keep fewer bytes.
TEST(Model, CheckpointingGivesIdenticalGradients) {
  auto k = make_cpu_kernels();
  for (bool qk_norm : {true, false}) {
    ModelConfig cfg = small_config(false);
    cfg.qk_norm = qk_norm;
    Rng rng(5);
    Batch b = make_lm_batch(*k, {random_doc(rng, 9, 37), random_doc(rng, 7, 37), random_doc(rng, 3, 37)},
                            cfg.vocab_size);
    std::vector<double> coef(19);
    for (auto& c : coef) c = rng.normal();
    Tensor dlogp = to_device(*k, coef, DType::F64);
    std::vector<std::vector<double>> ref;
    std::vector<double> ref_logp;
    int64_t bytes_prev = 0;
    for (Checkpointing pol : {Checkpointing::None, Checkpointing::Selective, Checkpointing::Full}) {
      Decoder m(cfg, *k, DType::F64);
      m.init_random(3);
      randomize_norms_and_biases(m, 4);
      m.set_checkpointing(pol);
      m.zero_grad();
      Tensor logp;
      m.forward(b, logp);
      m.backward(b, dlogp);
      m.backward(b, dlogp);  // repeatable: the recompute leaves the kept state intact
      std::vector<double> lp = to_host_f64(*k, logp);
      const int64_t bytes = m.activation_bytes(19);
      EXPECT_EQ(m.allocated_activation_bytes(), bytes) << checkpointing_name(pol);
      if (pol == Checkpointing::None) {
        ref_logp = lp;
        for (auto& p : m.params()) ref.push_back(to_host_f64(*k, p.grad));
      } else {
        EXPECT_LT(bytes, bytes_prev) << checkpointing_name(pol);
        EXPECT_EQ(lp, ref_logp) << checkpointing_name(pol);
        for (size_t j = 0; j < m.params().size(); ++j)
          ASSERT_EQ(to_host_f64(*k, m.params()[j].grad), ref[j])
              << checkpointing_name(pol) << " " << m.params()[j].name << " qk_norm " << qk_norm;
      }
      bytes_prev = bytes;
    }
  }
  EXPECT_EQ(checkpointing_from_name("selective"), Checkpointing::Selective);
  EXPECT_THROW(checkpointing_from_name("partial"), Error);
}

TEST(Model, ParamCountMatchesAllocation) {
  auto k = make_cpu_kernels();
  for (int mask = 0; mask < 8; ++mask) {
    ModelConfig cfg = small_config(mask & 1);
    cfg.qk_norm = mask & 2;
    cfg.qkv_bias = mask & 4;
    cfg.head_dim = 6;  // H*D != C, as in Qwen3
    Decoder m(cfg, *k, DType::F32);
    int64_t total = 0, decayed = 0;
    for (auto& p : m.params()) {
      total += p.value.numel();
      if (p.decay) decayed += p.value.numel();
      EXPECT_EQ(p.grad.shape(), p.value.shape()) << p.name;
      EXPECT_EQ(p.grad.dtype(), DType::F32);
      bool nodecay = p.name.find("norm") != std::string::npos || p.name.find(".bias") != std::string::npos;
      EXPECT_EQ(p.decay, !nodecay) << p.name;
    }
    EXPECT_EQ(total, cfg.param_count()) << "mask " << mask;
    EXPECT_EQ(total - decayed, cfg.norm_params() + (cfg.qkv_bias ? 2 * (6 * 4 + 2 * 6 * 2) : 0) +
                                   (cfg.qk_norm ? 2 * 2 * 6 : 0));
  }
}

TEST(Model, ConfigErrors) {
  ModelConfig c = small_config(true);
  EXPECT_NO_THROW(c.validate());
  auto expect_error = [](ModelConfig bad, const std::string& needle) {
    try {
      bad.validate();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  ModelConfig b = c;
  b.n_kv_heads = 3;
  expect_error(b, "n_kv_heads");
  b = c;
  b.head_dim = 5;
  expect_error(b, "head_dim must be even");
  b = c;
  b.vocab_size = 0;
  expect_error(b, "vocab_size must be positive");
  b = c;
  b.ffn_dim = -4;
  expect_error(b, "ffn_dim");
  b = c;
  b.norm_eps = 0;
  expect_error(b, "norm_eps");
  auto k = make_cpu_kernels();
  b = c;
  b.n_layers = 0;
  EXPECT_THROW(Decoder(b, *k, DType::F32), Error);
  EXPECT_THROW(Decoder(c, *k, DType::BF16), Error);
}

TEST(Model, FlopsAndCountsByHand) {
  ModelConfig c;
  c.vocab_size = 10;
  c.d_model = 4;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 2;
  c.ffn_dim = 8;
  // q 4x4, k,v 2x4 each, o 4x4, gate_up 16x4, down 4x8: 144 matmul weights; head 10x4
  EXPECT_EQ(c.param_count(), 40 + 144 + 3 * 4);
  EXPECT_DOUBLE_EQ(c.flops_per_token(9), 6.0 * (144 + 40) + 6.0 * 1 * 4 * 10);
  c.tie_embeddings = false;
  EXPECT_EQ(c.param_count(), 40 + 144 + 12 + 40);
  EXPECT_DOUBLE_EQ(c.flops_per_token(9), 6.0 * (144 + 40) + 240);  // the head costs the same tied or not
  std::string s = c.summary(9);
  EXPECT_NE(s.find("236"), std::string::npos) << s;
}

TEST(Model, InitRules) {
  auto k = make_cpu_kernels();
  ModelConfig c = small_config(false);
  c.d_model = 64;
  c.ffn_dim = 128;
  c.init_std = 0.02f;
  Decoder m(c, *k, DType::F64);
  m.init_random(42);
  auto stddev = [&](const std::string& name) {
    auto v = to_host_f64(*k, m.param(name).value);
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s / double(v.size()));
  };
  EXPECT_NEAR(stddev("layers.1.mlp.gate_up.weight"), 0.02, 0.001);
  EXPECT_NEAR(stddev("layers.0.mlp.down.weight"), 0.02 / 2.0, 0.0005);  // 1/sqrt(2 * 2 layers)
  EXPECT_NEAR(stddev("layers.0.attn.o.weight"), 0.01, 0.001);
  for (double x : to_host_f64(*k, m.param("layers.1.attn.q_norm.weight").value)) EXPECT_EQ(x, 1.0);
  for (double x : to_host_f64(*k, m.param("final_norm.weight").value)) EXPECT_EQ(x, 1.0);
  for (double x : to_host_f64(*k, m.param("layers.0.attn.k.bias").value)) EXPECT_EQ(x, 0.0);
  auto e1 = to_host_f64(*k, m.param("embed").value);
  m.init_random(42);
  EXPECT_EQ(to_host_f64(*k, m.param("embed").value), e1);
  m.init_random(43);
  EXPECT_NE(to_host_f64(*k, m.param("embed").value), e1);
  EXPECT_NE(to_host_f64(*k, m.param("lm_head.weight").value), e1);
  EXPECT_THROW(m.param("layers.9.attn.q.weight"), Error);
}

TEST(Model, BuffersGrowAndMatchActivationBytes) {
  auto k = make_cpu_kernels();
  ModelConfig c = small_config(true);
  Decoder m(c, *k, DType::F32);
  EXPECT_EQ(m.allocated_activation_bytes(), 0);
  Rng rng(9);
  Batch b1 = make_lm_batch(*k, {random_doc(rng, 12, 37)});
  Tensor logp;
  m.forward(b1, logp);
  m.backward(b1, sft_dlogp(*k, std::vector<int32_t>(12, 1), 12, m.stat_dtype()));
  EXPECT_EQ(m.allocated_activation_bytes(), m.activation_bytes(12));
  Batch b2 = make_lm_batch(*k, {random_doc(rng, 20, 37)});
  m.forward(b2, logp);
  EXPECT_EQ(m.capacity_tokens(), 20);
  EXPECT_EQ(m.allocated_activation_bytes(), m.activation_bytes(20));
  EXPECT_GT(m.activation_bytes(20), m.activation_bytes(12));
  m.forward(b1, logp);  // a smaller batch reuses the buffers
  EXPECT_EQ(m.capacity_tokens(), 20);
  EXPECT_EQ(logp.numel(), 12);
}

TEST(Model, LogitsAtAgreeWithLogp) {
  auto k = make_cpu_kernels();
  ModelConfig c = small_config(false);
  Decoder m(c, *k, DType::F64);
  m.init_random(4);
  Rng rng(6);
  Batch b = make_lm_batch(*k, {random_doc(rng, 6, 37), random_doc(rng, 7, 37)}, c.vocab_size);
  std::vector<int32_t> tg(13);
  {
    Tensor host = Tensor::wrap(tg.data(), {13}, DType::I32);
    k->copy(host, b.targets);
  }
  Tensor logp, logits;
  m.forward(b, logp);
  std::vector<double> lp = to_host_f64(*k, logp);
  std::vector<int64_t> idx = {0, 4, 7, 11};
  m.logits_at(b, idx, logits);
  ASSERT_EQ(logits.shape(), (Shape{4, 37}));
  std::vector<double> lg = to_host_f64(*k, logits);
  for (size_t r = 0; r < idx.size(); ++r) {
    double mx = -1e300, s = 0;
    for (int v = 0; v < 37; ++v) mx = std::max(mx, lg[r * 37 + size_t(v)]);
    for (int v = 0; v < 37; ++v) s += std::exp(lg[r * 37 + size_t(v)] - mx);
    double ls = lg[r * 37 + size_t(tg[size_t(idx[r])])] - mx - std::log(s);
    EXPECT_NEAR(ls, lp[size_t(idx[r])], 1e-10) << "row " << r;
  }
  // logits_at replaced the kept activations: backward must refuse
  EXPECT_THROW(m.backward(b, to_device(*k, std::vector<double>(13, 1.0), DType::F64)), Error);
  EXPECT_THROW(m.logits_at(b, {13}, logits), Error);
}

TEST(Model, F32TracksF64AndSftLossDecreases) {
  auto k = make_cpu_kernels();
  ModelConfig c = small_config(true);
  c.init_std = 0.1f;
  Decoder m64(c, *k, DType::F64), m32(c, *k, DType::F32);
  m64.init_random(21);
  m32.init_random(21);
  Rng rng(22);
  std::vector<std::vector<int32_t>> docs = {random_doc(rng, 9, 37), random_doc(rng, 11, 37)};
  Batch b = make_lm_batch(*k, docs, c.vocab_size);
  Tensor l64, l32;
  m64.forward(b, l64);
  m32.forward(b, l32);
  EXPECT_EQ(l32.dtype(), DType::F32);
  auto a = to_host_f64(*k, l64), f = to_host_f64(*k, l32);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(f[i], a[i], 1e-4 * (1 + std::fabs(a[i])));

  // plain SGD on the SFT cross-entropy of one batch: the loss must fall
  const std::vector<int32_t> tg = lm_targets(docs);
  const int64_t n_loss = count_loss_tokens(tg);
  ASSERT_EQ(n_loss, 18);
  Tensor dlogp = sft_dlogp(*k, tg, double(n_loss), DType::F32);
  auto loss_of = [&](const Tensor& logp) {
    double s = 0;
    for (double x : to_host_f64(*k, logp)) s -= x;
    return s / double(n_loss);
  };
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    m32.zero_grad();
    m32.forward(b, l32);
    (step == 0 ? first : last) = loss_of(l32);
    m32.backward(b, dlogp);
    for (auto& p : m32.params()) {
      float* v = p.value.data<float>();
      const float* g = p.grad.data<float>();
      for (int64_t i = 0; i < p.value.numel(); ++i) v[i] -= 0.5f * g[i];
    }
    m32.refresh_compute();
  }
  EXPECT_NEAR(first, std::log(37.0), 0.3);  // near uniform at a small init
  EXPECT_LT(last, 0.6 * first);
}

TEST(Model, ForwardBackwardEqualsForwardThenBackward) {
  auto k = make_cpu_kernels();
  for (bool tied : {true, false}) {
    ModelConfig c = small_config(tied);
    Decoder a(c, *k, DType::F64), b(c, *k, DType::F64);
    a.init_random(8);
    b.init_random(8);
    Rng rng(5);
    std::vector<std::vector<int32_t>> docs = {random_doc(rng, 9, 37), random_doc(rng, 4, 37)};
    Batch bt = make_lm_batch(*k, docs, c.vocab_size);
    const std::vector<int32_t> tg = lm_targets(docs);
    Tensor dlogp = sft_dlogp(*k, tg, double(count_loss_tokens(tg)), DType::F64);
    Tensor la, lb;
    a.zero_grad();
    b.zero_grad();
    a.forward(bt, la);
    a.backward(bt, dlogp);
    b.forward_backward(bt, dlogp, lb);
    EXPECT_EQ(to_host_f64(*k, la), to_host_f64(*k, lb));
    for (size_t i = 0; i < a.params().size(); ++i) {
      auto ga = to_host_f64(*k, a.params()[i].grad), gb = to_host_f64(*k, b.params()[i].grad);
      for (size_t j = 0; j < ga.size(); ++j) ASSERT_NEAR(ga[j], gb[j], 1e-14) << a.params()[i].name;
    }
    b.backward(bt, dlogp);  // activations stay valid: backward may follow (gradients accumulate)
    EXPECT_NEAR(to_host_f64(*k, b.params()[0].grad)[0], 2 * to_host_f64(*k, a.params()[0].grad)[0], 1e-12);
  }
}

TEST(Model, BatchErrors) {
  auto k = make_cpu_kernels();
  EXPECT_THROW(make_batch(*k, {1, 2, 3}, {2, 3, -1}, {0, 1, 2}, {0, 2}), Error);        // cu does not end at N
  EXPECT_THROW(make_batch(*k, {1, 2, 3}, {2, 3}, {0, 1, 2}, {0, 3}), Error);            // length mismatch
  EXPECT_THROW(make_batch(*k, {1, 2, 40}, {2, 40, -1}, {0, 1, 2}, {0, 3}, 37), Error);  // outside vocab
  EXPECT_THROW(make_batch(*k, {1, 2, 3}, {2, 3, -1}, {0, 1, 2}, {0, 3, 2, 3}), Error);  // decreasing
  Batch b = make_batch(*k, {1, 2, 3, 4}, {2, 3, -1, -1}, {0, 1, 0, 0}, {0, 2, 3, 4});
  EXPECT_EQ(b.max_seqlen, 2);
  EXPECT_EQ(b.n_tokens, 4);
  Decoder m(small_config(true), *k, DType::F32);
  EXPECT_THROW(m.backward(b, sft_dlogp(*k, {2, 3, -1, -1}, 2, DType::F32)), Error);  // no forward yet
  Tensor logp;
  m.forward(b, logp);
  EXPECT_THROW(m.backward(b, sft_dlogp(*k, {2, 3, -1, -1}, 2, DType::F64)), Error);  // wrong dtype
}

TEST(ModelConfigHf, Qwen25And3Shapes) {
  // Qwen2.5-0.5B: 494,032,768 parameters (360M without the embedding), q/k/v biases, tied.
  const std::string qwen25 = R"({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "hidden_act": "silu",
    "use_sliding_window": false, "rope_scaling": null, "initializer_range": 0.02})";
  ModelConfig a = model_config_from_hf_json(qwen25, "qwen25.json");
  EXPECT_EQ(a.head_dim, 64);
  EXPECT_TRUE(a.qkv_bias);
  EXPECT_FALSE(a.qk_norm);
  EXPECT_TRUE(a.tie_embeddings);
  EXPECT_EQ(a.param_count(), 494032768);
  EXPECT_FLOAT_EQ(a.rope_theta, 1e6f);
  // Qwen3-0.6B: head_dim 128 != 1024/16, q/k norms, 440M non-embedding parameters.
  const std::string qwen3 = R"({"model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072,
    "vocab_size": 151936, "attention_bias": false, "tie_word_embeddings": true, "rms_norm_eps": 1e-06})";
  ModelConfig b = model_config_from_hf_json(qwen3, "qwen3.json");
  EXPECT_TRUE(b.qk_norm);
  EXPECT_FALSE(b.qkv_bias);
  EXPECT_EQ(b.param_count() - b.embedding_params(), 440467456);
}

TEST(ModelConfigHf, Errors) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      model_config_from_hf_json(text, "cfg.json");
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(needle), std::string::npos) << m;
      EXPECT_NE(m.find("cfg.json"), std::string::npos) << m;
    }
  };
  const std::string base = R"("hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 128, "vocab_size": 100)";
  EXPECT_NO_THROW(model_config_from_hf_json("{\"model_type\": \"llama\", " + base + "}", "cfg.json"));
  expect_error("{\"model_type\": \"gpt2\", " + base + "}", "model_type 'gpt2'");
  expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"llama3\"}, " + base + "}",
               "rope_scaling");
  expect_error("{\"model_type\": \"llama\", \"num_key_value_heads\": 3, " + base + "}", "n_kv_heads");
  expect_error(R"({"model_type": "llama", "hidden_size": 64})", "missing key 'vocab_size'");
  expect_error("{\"model_type\": \"llama\", \"hidden_act\": \"gelu\", " + base + "}", "hidden_act");
  expect_error("not json", "not valid JSON");
  EXPECT_THROW(load_hf_config("/nonexistent/config.json"), Error);
}

}  // namespace
}  // namespace temper
