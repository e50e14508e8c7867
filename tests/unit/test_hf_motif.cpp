// Motif-format checkpoints (MotifForCausalLM: grouped differential attention + PolyNorm,
// the released layout). The fixture tests/fixtures/motif/tiny (3 sharded safetensors,
// 8 signal + 2 noise heads, 2 + 2 key heads, values 2 x head_dim, head_dim x heads !=
// hidden) and its reference logits and loss come from an independent PyTorch
// implementation (validation/motif/motif_fixture.py). temper loads it through
// model.init = hf:DIR and must give those logits (f64 and f32), export it as a directory
// the same loader reads back bit for bit, and refuse malformed configs by key.
// TEMPER_MOTIF_EXPORT_DIR=DIR keeps the f32 export (validation/motif/run_fixture_device.sh
// loads it into the PyTorch implementation).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/decoder.h"
#include "model/hf_checkpoint.h"

using namespace temper;
namespace fs = std::filesystem;

namespace {

const fs::path kFixture = fs::path(TEMPER_SOURCE_DIR) / "tests/fixtures/motif/tiny";

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << p;
  return nlohmann::json::parse(in);
}

struct Result {
  double max_rel = 0, loss = 0;
};

// temper's logits of every reference sequence (one document each) against the reference,
// and the mean next-token loss.
Result compare(Decoder& m, Kernels& k, const nlohmann::json& ref) {
  Result r;
  const int64_t V = m.config().vocab_size;
  double nll = 0;
  int64_t count = 0;
  for (size_t s = 0; s < ref["input_ids"].size(); ++s) {
    const auto ids = ref["input_ids"][s].get<std::vector<int32_t>>();
    Batch b = make_lm_batch(k, {ids}, int(V));
    std::vector<int64_t> rows(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) rows[i] = int64_t(i);
    Tensor logits;
    m.logits_at(b, rows, logits);
    const auto got = to_host_f64(k, logits);
    const auto want = ref["logits"][s].get<std::vector<double>>();
    EXPECT_EQ(got.size(), want.size());
    double worst = 0, scale = 0;
    for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
      worst = std::max(worst, std::fabs(got[i] - want[i]));
      scale = std::max(scale, std::fabs(want[i]));
    }
    r.max_rel = std::max(r.max_rel, worst / scale);
    Tensor logp;
    m.forward(b, logp);  // log p(next token) at every position but the last
    for (double v : to_host_f64(k, logp)) nll -= v;
    count += int64_t(ids.size()) - 1;
  }
  r.loss = nll / double(count);
  return r;
}

std::unique_ptr<Decoder> load(Kernels& k, const fs::path& dir, DType dt) {
  const HfModelInfo info = read_hf_model_info(dir.string());
  auto m = std::make_unique<Decoder>(info.config, k, dt);
  load_hf_weights(*m, k, dir.string());
  return m;
}

std::string error_of(const std::string& json) {
  try {
    model_config_from_hf_json(json, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(HfMotif, ConfigMapsToTheReleasedLayout) {
  const HfModelInfo info = read_hf_model_info(kFixture.string());
  const ModelConfig& c = info.config;
  EXPECT_EQ(info.architecture, "MotifForCausalLM");
  EXPECT_EQ(c.attention, AttentionKind::GroupedDifferential);
  EXPECT_EQ(c.n_heads, 8);        // num_attention_heads 10 - num_noise_heads 2
  EXPECT_EQ(c.n_noise_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 2);     // num_key_value_heads 4 = 2 signal-key + 2 noise-key heads
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.mlp_activation, MlpActivation::PolyNorm);
  EXPECT_FLOAT_EQ(c.diff_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_FALSE(c.tie_embeddings);
  // every tensor of the index is a parameter (and the other way round): count them
  const auto index = read_json(kFixture / "model.safetensors.index.json");
  int64_t hf_tensors = 0;
  for (const auto& m : hf_param_maps(c)) hf_tensors += int64_t(m.hf_names.size());
  EXPECT_EQ(hf_tensors, int64_t(index["weight_map"].size()));
  // Motif-2.6B's config has no num_noise_heads: every signal head has its own noise head
  ModelConfig d = model_config_from_hf_json(
      R"({"model_type":"motif","vocab_size":11,"hidden_size":16,"num_hidden_layers":1,"num_attention_heads":4,)"
      R"("num_key_value_heads":4,"intermediate_size":8,"hidden_act":"poly_norm"})",
      "cfg.json");
  EXPECT_EQ(d.attention, AttentionKind::Differential);
  EXPECT_EQ(d.n_heads, 2);
  EXPECT_EQ(d.n_noise_heads, 2);
  EXPECT_EQ(d.n_kv_heads, 2);
  EXPECT_EQ(d.head_dim, 4);  // hidden / num_attention_heads (signal + noise)
}

TEST(HfMotif, LogitsAndLossMatchThePyTorchImplementation) {
  ASSERT_TRUE(fs::exists(kFixture / "reference.json"))
      << "tests/fixtures/motif/tiny/reference.json is made by validation/motif/run_fixture_device.sh";
  const auto ref = read_json(kFixture / "reference.json");
  auto k = make_cpu_kernels();
  for (DType dt : {DType::F64, DType::F32}) {
    auto m = load(*k, kFixture, dt);
    const Result r = compare(*m, *k, ref);
    const double tol = dt == DType::F64 ? 1e-10 : 1e-5;
    EXPECT_LT(r.max_rel, tol) << dtype_name(dt);
    EXPECT_NEAR(r.loss, ref["loss"].get<double>(), tol * ref["loss"].get<double>()) << dtype_name(dt);
  }
}

TEST(HfMotif, ExportReloadsExactlyWithTheReleasedNames) {
  auto k = make_cpu_kernels();
  auto m = load(*k, kFixture, DType::F32);
  const char* keep = std::getenv("TEMPER_MOTIF_EXPORT_DIR");
  const fs::path out = keep ? fs::path(keep) : fs::temp_directory_path() / "temper_test_hf_motif_export";
  fs::remove_all(out);
  HfExportOptions o;
  o.dtype = DType::F32;
  o.max_shard_bytes = 64 << 10;  // several shards
  o.max_position_embeddings = 64;
  export_hf(*m, *k, out.string(), o);
  // config.json: the keys Motif's code reads
  const auto cfg = read_json(out / "config.json");
  EXPECT_EQ(cfg["architectures"][0], "MotifForCausalLM");
  EXPECT_EQ(cfg["model_type"], "motif");
  EXPECT_EQ(cfg["num_attention_heads"], 10);
  EXPECT_EQ(cfg["num_noise_heads"], 2);
  EXPECT_EQ(cfg["num_key_value_heads"], 4);
  EXPECT_EQ(cfg["hidden_act"], "poly_norm");
  EXPECT_EQ(cfg["k_ratio"], 1);
  EXPECT_NEAR(cfg["attn_rms_norm_eps"].get<double>(), 1e-5, 1e-12);
  // the same tensor names and shapes as the fixture, more shards
  const auto a = read_json(kFixture / "model.safetensors.index.json")["weight_map"];
  const auto b = read_json(out / "model.safetensors.index.json")["weight_map"];
  EXPECT_EQ(a.size(), b.size());
  for (auto it = a.begin(); it != a.end(); ++it) EXPECT_TRUE(b.contains(it.key())) << it.key();
  // reloaded: identical parameters
  auto m2 = load(*k, out, DType::F32);
  for (size_t i = 0; i < m->params().size(); ++i)
    EXPECT_EQ(to_host_f64(*k, m->params()[i].value), to_host_f64(*k, m2->params()[i].value))
        << m->params()[i].name;
  if (!keep) fs::remove_all(out);
}

TEST(HfMotif, MalformedConfigsAreRefusedByKey) {
  const std::string base =
      R"("model_type":"motif","vocab_size":11,"hidden_size":16,"num_hidden_layers":1,"intermediate_size":8,)"
      R"("head_dim":4,"hidden_act":"poly_norm")";
  EXPECT_NE(error_of("{" + base + R"(,"num_attention_heads":10,"num_noise_heads":2,"num_key_value_heads":3})")
                .find("num_key_value_heads (3) must be even"),
            std::string::npos);
  EXPECT_NE(error_of("{" + base + R"(,"num_attention_heads":10,"num_noise_heads":2,"num_key_value_heads":4,"k_ratio":2})")
                .find("k_ratio"),
            std::string::npos);
  EXPECT_NE(error_of("{" + base + R"(,"num_attention_heads":10,"num_noise_heads":4,"num_key_value_heads":4})")
                .find("6 signal heads, not a multiple of num_noise_heads"),
            std::string::npos);
  EXPECT_NE(error_of("{" + base + R"(,"num_attention_heads":10,"num_noise_heads":2,"num_key_value_heads":4,"use_bias":true})")
                .find("use_bias"),
            std::string::npos);
  const std::string silu = R"({"model_type":"motif","vocab_size":11,"hidden_size":16,"num_hidden_layers":1,)"
                           R"("intermediate_size":8,"num_attention_heads":4,"num_key_value_heads":4,"hidden_act":"silu"})";
  EXPECT_NE(error_of(silu).find("poly_norm"), std::string::npos);
  // export refuses the combinations no released model has
  ModelConfig c = model_config_from_hf_json("{" + base + R"(,"num_attention_heads":10,"num_noise_heads":2,)"
                                                         R"("num_key_value_heads":4})",
                                            "cfg.json");
  c.mlp_activation = MlpActivation::SwiGLU;
  EXPECT_THROW(hf_architecture_for(c), Error);
}
