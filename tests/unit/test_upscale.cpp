// Hypercloning / depth upscaling: the upscaled model's logits equal the
// original's (width x2, depth +2, both; tied and untied embeddings, GQA, qkv
// bias, qk_norm; Motif: differential -> grouped differential attention with the
// signal heads repeated 4 times, heads not following d_model, untied head, PolyNorm)
// on the CPU backend in f64; bad options are refused; through the executable the
// upscaled checkpoint is a model.init that SFT accepts and that starts at the
// original model's loss.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "train/upscale.h"
#include "unit/run_util.h"

using namespace temper;
namespace fs = std::filesystem;

namespace {

ModelConfig small(bool tied, bool bias, bool qk_norm, int heads, int kv_heads) {
  ModelConfig c;
  c.vocab_size = 37;
  c.d_model = 12;
  c.n_layers = 2;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = 4;
  c.ffn_dim = 10;
  c.tie_embeddings = tied;
  c.qkv_bias = bias;
  c.qk_norm = qk_norm;
  c.init_std = 0.3f;
  return c;
}

// Every parameter random (norm weights and biases too, so their tiling matters).
void randomise(Decoder& m, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, 0.3);
  for (auto& p : m.params()) {
    const bool vec = p.value.ndim() == 1;
    for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<double>()[i] = vec ? 1.0 + d(g) : d(g);
  }
  m.refresh_compute();
}

// The largest |a - b| / (1 + |b|) over the logits.
double worst_rel(const std::vector<double>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    worst = std::max(worst, std::fabs(got[i] - want[i]) / (1 + std::fabs(want[i])));
  return worst;
}

std::vector<double> all_logits(Decoder& m, Kernels& k, const Batch& b) {
  std::vector<int64_t> idx(size_t(b.n_tokens));
  for (int64_t i = 0; i < b.n_tokens; ++i) idx[size_t(i)] = i;
  Tensor logits;
  m.logits_at(b, idx, logits);
  return to_host_f64(k, logits);
}

}  // namespace

TEST(Upscale, LogitsOfTheUpscaledModelEqualTheOriginals) {
  auto k = make_cpu_kernels();
  struct Case { UpscaleOptions opt; const char* what; };
  std::vector<Case> cases(3);
  cases[0].opt.width_factor = 2;
  cases[0].what = "width x2";
  cases[1].opt.depth = 4;
  cases[1].what = "depth +2";
  cases[2].opt.width_factor = 2;
  cases[2].opt.insert_after = {0, 1};
  cases[2].what = "width x2 and depth +2";
  const std::vector<ModelConfig> configs = {small(true, true, false, 4, 2), small(false, false, true, 2, 1),
                                            small(false, true, true, 3, 3)};
  uint32_t seed = 1;
  for (const auto& c : configs) {
    Decoder orig(c, *k, DType::F64);
    randomise(orig, seed++);
    std::map<std::string, Tensor> ps;
    for (auto& p : orig.params()) ps[p.name] = p.value;
    Batch b = make_lm_batch(*k, {{1, 5, 9, 3, 7, 2, 8, 0}, {4, 36, 6, 30, 11}}, c.vocab_size);
    const std::vector<double> want = all_logits(orig, *k, b);
    for (const auto& cs : cases) {
      const UpscaledModel up = upscale_model(c, ps, cs.opt);
      const int f = cs.opt.width_factor;
      EXPECT_EQ(up.config.d_model, f * c.d_model) << cs.what;
      EXPECT_EQ(up.config.n_heads, f * c.n_heads) << cs.what;
      EXPECT_EQ(up.config.n_kv_heads, f * c.n_kv_heads) << cs.what;
      EXPECT_EQ(up.config.ffn_dim, f * c.ffn_dim) << cs.what;
      EXPECT_EQ(up.config.n_layers, cs.opt.width_factor == 1 ? 4 : (cs.opt.insert_after.empty() ? 2 : 4)) << cs.what;
      EXPECT_EQ(up.config.tie_embeddings, c.tie_embeddings);
      Decoder big(up.config, *k, DType::F64);
      ASSERT_EQ(big.params().size(), up.params.size()) << cs.what;
      for (auto& p : big.params()) k->copy(p.value, up.params.at(p.name));
      big.refresh_compute();
      EXPECT_LT(worst_rel(all_logits(big, *k, b), want), 1e-10)
          << cs.what << ", tied " << c.tie_embeddings << ", qk_norm " << c.qk_norm;
    }
  }
}

// Motif-2.6B-like (differential attention: 2 signal + 2 noise heads, 2 + 2 key heads, 2D values,
// PolyNorm, tied) to Motif-2-12.7B-like widths: d_model and ffn x2, signal heads x4 in each group
// (grouped 4:1), noise and key/value heads kept, untied head, one more layer; and a grouped model
// hypercloned x2 in width and heads. The logits stay.
TEST(Upscale, MotifHypercloningKeepsTheLogits) {
  auto k = make_cpu_kernels();
  ModelConfig c = small(true, false, false, 2, 2);
  c.head_dim = 4;
  c.attention = AttentionKind::Differential;
  c.n_noise_heads = 2;
  c.mlp_activation = MlpActivation::PolyNorm;
  ModelConfig g = small(false, false, false, 4, 2);
  g.attention = AttentionKind::GroupedDifferential;
  g.n_noise_heads = 2;
  g.mlp_activation = MlpActivation::PolyNorm;
  UpscaleOptions to12b;
  to12b.width_factor = 2;
  to12b.head_factor = 1;
  to12b.signal_head_factor = 4;
  to12b.untie_embeddings = true;
  to12b.depth = 3;
  UpscaleOptions clone2;
  clone2.width_factor = 2;
  for (auto [cfg, opt] : {std::pair<ModelConfig, UpscaleOptions>{c, to12b}, {g, clone2}}) {
    Decoder orig(cfg, *k, DType::F64);
    randomise(orig, 11);
    std::map<std::string, Tensor> ps;
    for (auto& p : orig.params()) ps[p.name] = p.value;
    Batch b = make_lm_batch(*k, {{1, 5, 9, 3, 7, 2, 8, 0}, {4, 36, 6, 30, 11}}, cfg.vocab_size);
    const std::vector<double> want = all_logits(orig, *k, b);
    const UpscaledModel up = upscale_model(cfg, ps, opt);
    const ModelConfig& n = up.config;
    const std::string what = attention_kind_name(cfg.attention);
    EXPECT_EQ(n.attention, AttentionKind::GroupedDifferential) << what;
    EXPECT_EQ(n.d_model, 2 * cfg.d_model) << what;
    EXPECT_EQ(n.ffn_dim, 2 * cfg.ffn_dim) << what;
    if (opt.signal_head_factor == 4) {
      EXPECT_EQ(n.n_heads, 8);
      EXPECT_EQ(n.n_noise_heads, 2);
      EXPECT_EQ(n.n_kv_heads, 2);
      EXPECT_FALSE(n.tie_embeddings);
      EXPECT_EQ(n.n_layers, 3);
    } else {
      EXPECT_EQ(n.n_heads, 8);
      EXPECT_EQ(n.n_noise_heads, 4);
      EXPECT_EQ(n.n_kv_heads, 4);
    }
    Decoder big(n, *k, DType::F64);
    ASSERT_EQ(big.params().size(), up.params.size()) << what;
    for (auto& p : big.params()) k->copy(p.value, up.params.at(p.name));
    big.refresh_compute();
    EXPECT_LT(worst_rel(all_logits(big, *k, b), want), 1e-10) << what;
  }
  UpscaleOptions bad;
  bad.signal_head_factor = 2;
  Decoder plain(small(false, false, false, 2, 2), *k, DType::F64);
  std::map<std::string, Tensor> ps;
  for (auto& p : plain.params()) ps[p.name] = p.value;
  EXPECT_THROW(upscale_model(plain.config(), ps, bad), Error);
}

TEST(Upscale, BadOptionsAreRefused) {
  const ModelConfig c = small(true, false, false, 2, 2);
  auto k = make_cpu_kernels();
  Decoder m(c, *k, DType::F64);
  std::map<std::string, Tensor> ps;
  for (auto& p : m.params()) ps[p.name] = p.value;
  auto refused = [&](UpscaleOptions o, const char* needle) {
    try {
      upscale_model(c, ps, o);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  UpscaleOptions o;
  o.width_factor = 0;
  refused(o, "--width-factor");
  refused(UpscaleOptions{}, "nothing to do");
  o = {};
  o.depth = 1;
  refused(o, "smaller than the model's 2 layers");
  o = {};
  o.insert_after = {2};
  refused(o, "outside the model's layers 0..1");
  o.depth = 3;
  o.insert_after = {0};
  refused(o, "not both");
  auto extra = ps;
  extra["layers.0.attn.lambda_q1"] = Tensor::zeros({4}, DType::F64);
  o = {};
  o.width_factor = 2;
  try {
    upscale_model(c, extra, o);
    ADD_FAILURE() << "accepted an unknown tensor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lambda_q1"), std::string::npos) << e.what();
  }
}

TEST(Upscale, CommandWritesACheckpointSftStartsFromAtTheSameLoss) {
  using namespace temper_test;
  auto dir = fresh_dir("upscale");
  auto r = run_cmd(temper_bin() + " generate-tasks --out " + dir.string() + " --seed 2 --train 50 --eval 4");
  ASSERT_EQ(r.status, 0) << r.output;
  auto sft = [&](const fs::path& out, const std::string& extra) {
    return run_cmd(temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart.deck --run.output_dir=" +
                   out.string() + " --data.train_files=" + (dir / "sft_train.jsonl").string() +
                   " --data.eval_file= --model.d_model=16 --model.n_layers=2 --model.n_heads=2 --model.n_kv_heads=1"
                   " --model.ffn_dim=32 --data.seq_len=64 --data.micro_batch=2 --sft.warmup_steps=0 --log.every=1"
                   " --checkpoint.resume=never " + extra);
  };
  r = sft(dir / "orig", "--sft.steps=2");
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(temper_bin() + " upscale --checkpoint " + (dir / "orig" / "checkpoints").string() + " --out " +
              (dir / "up").string() + " --width-factor 2 --insert-layers 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("3 layers, d_model 32"), std::string::npos) << r.output;
  // the same first batch through the original and the upscaled model (lr 0: the loss is the model's)
  auto first_loss = [&](const fs::path& init, const fs::path& out) {
    auto res = sft(out, "--sft.steps=1 --sft.lr=0 --sft.min_lr=0 --model.init=" + init.string());
    EXPECT_EQ(res.status, 0) << res.output;
    const std::string m = read_file(out / "metrics.rank0.jsonl");
    const size_t p = m.find("\"loss\":");
    return p == std::string::npos ? NAN : std::stod(m.substr(p + 7));
  };
  const double a = first_loss(dir / "orig" / "checkpoints", dir / "run_a");
  const double b = first_loss(dir / "up", dir / "run_b");
  EXPECT_NEAR(a, b, 1e-5 * a) << "the upscaled model starts at another loss";
  // bad input through the command: exit 2 with the reason
  r = run_cmd(temper_bin() + " upscale --checkpoint " + (dir / "up").string() + " --out " + (dir / "x").string() +
              " --width-factor 0");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--width-factor"), std::string::npos) << r.output;
  r = run_cmd(temper_bin() + " upscale --checkpoint " + (dir / "nothere").string() + " --out " + (dir / "x").string() +
              " --depth 4");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("nothere"), std::string::npos) << r.output;
  fs::remove_all(dir);
}
