// Hugging Face import/export: the committed transformers fixtures (Qwen2 tied and
// sharded, Qwen3 with q/k norm and head_dim != hidden/heads, Llama) load and give
// transformers' logits on the CPU backend; export -> re-import is exact; name,
// shape and architecture errors are specific; `temper export` on an SFT checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "core/bf16.h"
#include "deck/deck.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "model/hf_checkpoint.h"
#include "train/model_setup.h"
#include "unit/run_util.h"

using namespace temper;
using temper_test::fresh_dir;
using temper_test::read_file;
using temper_test::write_file;
namespace fs = std::filesystem;

namespace {

// A fresh directory removed when the test ends (pass or fail).
struct TempDir {
  fs::path p;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

fs::path fixture(const std::string& name) { return fs::path(TEMPER_SOURCE_DIR) / "tests/fixtures/hf/models" / name; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

struct LogitErr {
  double max_abs = 0, max_rel = 0;
};

// Temper's logits at every position of one sequence.
std::vector<double> temper_logits(Decoder& m, Kernels& k, const std::vector<int32_t>& ids) {
  Batch b = make_lm_batch(k, {ids}, m.config().vocab_size);
  std::vector<int64_t> rows(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) rows[i] = int64_t(i);
  Tensor logits;
  m.logits_at(b, rows, logits);
  return to_host_f64(k, logits);
}

// max |a-b| and max |a-b| / max|b| (relative to the logits' scale).
LogitErr compare_to_reference(Decoder& m, Kernels& k, const nlohmann::json& ref) {
  const auto ids = ref["input_ids"].get<std::vector<int32_t>>();
  const auto lg = temper_logits(m, k, ids);
  const int64_t V = m.config().vocab_size;
  LogitErr e;
  double scale = 0;
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t v = 0; v < V; ++v) {
      const double r = ref["logits"][t][size_t(v)].get<double>();
      e.max_abs = std::max(e.max_abs, std::fabs(lg[t * size_t(V) + size_t(v)] - r));
      scale = std::max(scale, std::fabs(r));
    }
  e.max_rel = e.max_abs / scale;
  return e;
}

// Writes temper's logits of m on `ids` as DIR/temper_logits.json (for validation/hf/check_export.py).
void write_logits_json(Decoder& m, Kernels& k, const std::vector<int32_t>& ids, const fs::path& dir) {
  const auto lg = temper_logits(m, k, ids);
  const size_t V = size_t(m.config().vocab_size);
  nlohmann::json j;
  j["input_ids"] = ids;
  for (size_t t = 0; t < ids.size(); ++t)
    j["logits"].push_back(std::vector<double>(lg.begin() + long(t * V), lg.begin() + long((t + 1) * V)));
  write_file(dir / "temper_logits.json", j.dump());
}

// Every parameter equal (exactly, or after bf16 rounding of a).
void expect_same_weights(const Decoder& a, const Decoder& b, Kernels& k, bool bf16) {
  ASSERT_EQ(a.params().size(), b.params().size());
  for (size_t i = 0; i < a.params().size(); ++i) {
    const auto& pa = a.params()[i];
    const auto& pb = b.params()[i];
    ASSERT_EQ(pa.name, pb.name);
    ASSERT_EQ(pa.value.shape(), pb.value.shape()) << pa.name;
    auto va = to_host_f64(k, pa.value), vb = to_host_f64(k, pb.value);
    int bad = 0;
    for (size_t j = 0; j < va.size(); ++j) {
      const double want = bf16 ? double(bf16_to_float(float_to_bf16(float(va[j])))) : va[j];
      bad += vb[j] != want;
    }
    EXPECT_EQ(bad, 0) << pa.name;
  }
}

// A copy of a fixture whose tensors went through `edit` (name -> tensor, in HF names).
fs::path edited_copy(const std::string& fixture_name, const std::string& tag,
                     const std::function<void(std::map<std::string, Tensor>&)>& edit) {
  const fs::path dir = fresh_dir("hf_edit_" + tag);  // the caller removes it
  fs::copy_file(fixture(fixture_name) / "config.json", dir / "config.json");
  SafetensorsSet set = SafetensorsSet::open_dir(fixture(fixture_name).string());
  std::map<std::string, Tensor> t;
  for (const auto& n : set.names()) t[n] = set.read_f32(n);
  edit(t);
  NamedTensors nt(t.begin(), t.end());
  write_safetensors((dir / "model.safetensors").string(), nt, DType::F32);
  return dir;
}

}  // namespace

TEST(HfCheckpoint, ConfigOfEachFixture) {
  auto q2 = read_hf_model_info(fixture("qwen2_tied_sharded").string());
  EXPECT_EQ(q2.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(q2.config.qkv_bias && q2.config.tie_embeddings && !q2.config.qk_norm);
  EXPECT_EQ(q2.config.head_dim, 16);
  auto q3 = read_hf_model_info(fixture("qwen3_untied").string());
  EXPECT_EQ(q3.architecture, "Qwen3ForCausalLM");
  EXPECT_TRUE(q3.config.qk_norm && !q3.config.qkv_bias && !q3.config.tie_embeddings);
  EXPECT_EQ(q3.config.head_dim, 24);
  EXPECT_EQ(q3.config.n_kv_heads, 2);
  auto ll = read_hf_model_info(fixture("llama_untied").string());
  EXPECT_EQ(ll.architecture, "LlamaForCausalLM");
  EXPECT_EQ(ll.config.ffn_dim, 96);
  EXPECT_FLOAT_EQ(ll.config.rope_theta, 10000.f);
  EXPECT_FLOAT_EQ(ll.config.norm_eps, 1e-6f);
  for (const auto* i : {&q2, &q3, &ll}) EXPECT_EQ(hf_architecture_for(i->config), i->architecture);
}

TEST(HfCheckpoint, FixtureLogitsMatchTransformers) {
  auto k = make_cpu_kernels();
  for (const char* name : {"qwen2_tied_sharded", "qwen3_untied", "llama_untied"}) {
    const auto ref = nlohmann::json::parse(read_file(fixture(name) / "reference.json"));
    const ModelConfig cfg = read_hf_model_info(fixture(name).string()).config;
    for (DType dt : {DType::F64, DType::F32}) {
      Decoder m(cfg, *k, dt);
      load_hf_weights(m, *k, fixture(name).string());
      const LogitErr e = compare_to_reference(m, *k, ref);
      std::printf("[ logits ] %-20s %s: max abs err %.3e, max rel err %.3e\n", name, dtype_name(dt), e.max_abs,
                  e.max_rel);
      EXPECT_LT(e.max_abs, 5e-6) << name << " " << dtype_name(dt);
      EXPECT_LT(e.max_rel, 5e-6) << name << " " << dtype_name(dt);
    }
  }
}

TEST(HfCheckpoint, ExportReimportIsExactAndNamesMatchTransformers) {
  auto k = make_cpu_kernels();
  for (const char* name : {"qwen2_tied_sharded", "qwen3_untied", "llama_untied"}) {
    const auto ref = nlohmann::json::parse(read_file(fixture(name) / "reference.json"));
    const HfModelInfo info = read_hf_model_info(fixture(name).string());
    Decoder m(info.config, *k, DType::F32);
    load_hf_weights(m, *k, fixture(name).string());
    for (DType dt : {DType::F32, DType::BF16}) {
      TempDir out_guard{fresh_dir(std::string("hf_export_") + name)};
  const fs::path& out = out_guard.p;
      HfExportOptions o;
      o.dtype = dt;
      o.max_shard_bytes = 100000;  // several shards
      auto files = export_hf(m, *k, out.string(), o);
      EXPECT_NE(std::find(files.begin(), files.end(), "model.safetensors.index.json"), files.end());
      // exactly transformers' parameter names and shapes (a tied model has no lm_head)
      SafetensorsSet set = SafetensorsSet::open_dir(out.string());
      EXPECT_EQ(set.names().size(), ref["params"].size()) << name;
      for (auto it = ref["params"].begin(); it != ref["params"].end(); ++it) {
        ASSERT_TRUE(set.contains(it.key())) << name << ": " << it.key();
        EXPECT_EQ(set.info(it.key()).shape, it.value().get<Shape>()) << it.key();
        EXPECT_EQ(set.info(it.key()).dtype, dt == DType::F32 ? "F32" : "BF16");
      }
      EXPECT_EQ(set.contains("lm_head.weight"), !info.config.tie_embeddings) << name;
      auto cj = nlohmann::json::parse(read_file(out / "config.json"));
      EXPECT_EQ(cj["architectures"][0], info.architecture);
      EXPECT_EQ(cj["torch_dtype"], dt == DType::F32 ? "float32" : "bfloat16");
      EXPECT_EQ(cj["tie_word_embeddings"], info.config.tie_embeddings);
      EXPECT_EQ(cj["head_dim"], info.config.head_dim);
      EXPECT_EQ(cj["rms_norm_eps"].get<double>(), 1e-6);
      EXPECT_TRUE(fs::exists(out / "generation_config.json"));

      const HfModelInfo back = read_hf_model_info(out.string());
      EXPECT_EQ(back.architecture, info.architecture);
      Decoder m2(back.config, *k, DType::F32);
      load_hf_weights(m2, *k, out.string());
      expect_same_weights(m, m2, *k, dt == DType::BF16);
      if (dt == DType::F32) {
        const LogitErr e = compare_to_reference(m2, *k, ref);
        EXPECT_LT(e.max_abs, 5e-6) << name;
      }
      if (const char* keep = std::getenv("TEMPER_HF_EXPORT_KEEP"); keep && dt == DType::BF16) {
        const fs::path kept = fs::path(keep) / (std::string(name) + "_bf16");
        fs::remove_all(kept);
        fs::create_directories(kept.parent_path());
        fs::copy(out, kept, fs::copy_options::recursive);
        write_logits_json(m2, *k, ref["input_ids"].get<std::vector<int32_t>>(), kept);
      }
      fs::remove_all(out);
    }
  }
}

TEST(HfCheckpoint, Qwen3WithBiasesExportsZeroOutputBiasAndReimports) {
  auto k = make_cpu_kernels();
  ModelConfig c;
  c.vocab_size = 50, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 8;
  c.ffn_dim = 24, c.qk_norm = true, c.qkv_bias = true, c.tie_embeddings = false, c.rope_theta = 1e6f;
  Decoder m(c, *k, DType::F32);
  m.init_random(5);
  TempDir out_guard{fresh_dir("hf_q3bias")};
  const fs::path& out = out_guard.p;
  TempDir tok_guard{fresh_dir("hf_tok")};
  const fs::path& tok = tok_guard.p;
  write_file(tok / "tokenizer.json", "{\"model\": {}}");
  write_file(tok / "tokenizer_config.json", "{}");
  HfExportOptions o;
  o.dtype = DType::F32;
  o.tokenizer_dir = tok.string();
  o.eos_token_id = 7;
  export_hf(m, *k, out.string(), o);
  EXPECT_EQ(read_file(out / "tokenizer.json"), "{\"model\": {}}");
  EXPECT_TRUE(fs::exists(out / "tokenizer_config.json"));
  EXPECT_EQ(nlohmann::json::parse(read_file(out / "generation_config.json"))["eos_token_id"], 7);
  auto cj = nlohmann::json::parse(read_file(out / "config.json"));
  EXPECT_EQ(cj["attention_bias"], true);
  EXPECT_EQ(cj["rope_theta"].get<double>(), 1e6);
  EXPECT_EQ(cj["rope_parameters"]["rope_theta"].get<double>(), 1e6);
  SafetensorsSet set = SafetensorsSet::open_dir(out.string());
  ASSERT_TRUE(set.contains("model.layers.1.self_attn.o_proj.bias"));
  EXPECT_EQ(set.read_f32("model.layers.1.self_attn.o_proj.bias").data<float>()[3], 0.f);
  Decoder m2(read_hf_model_info(out.string()).config, *k, DType::F32);
  load_hf_weights(m2, *k, out.string());
  expect_same_weights(m, m2, *k, false);
  // a non-zero output bias cannot be represented: refused
  NamedTensors nt;
  for (const auto& n : set.names()) nt.emplace_back(n, set.read_f32(n));
  for (auto& [n, t] : nt)
    if (n == "model.layers.0.self_attn.o_proj.bias") t.data<float>()[1] = 0.5f;
  write_safetensors((out / "model.safetensors").string(), nt, DType::F32);
  const std::string msg = error_of([&] { load_hf_weights(m2, *k, out.string()); });
  EXPECT_NE(msg.find("model.layers.0.self_attn.o_proj.bias"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { o.tokenizer_dir = (out / "nope").string(); export_hf(m, *k, out.string(), o); })
                .find("nope"),
            std::string::npos);
}

TEST(HfCheckpoint, ShapeMissingUnexpectedAndConfigErrorsAreSpecific) {
  auto k = make_cpu_kernels();
  const ModelConfig cfg = read_hf_model_info(fixture("llama_untied").string()).config;
  Decoder m(cfg, *k, DType::F32);

  auto bad_shape = edited_copy("llama_untied", "shape", [](auto& t) {
    t["model.layers.1.mlp.down_proj.weight"] = Tensor::zeros({64, 95}, DType::F32);
  });
  std::string msg = error_of([&] { load_hf_weights(m, *k, bad_shape.string()); });
  EXPECT_NE(msg.find((bad_shape / "model.safetensors").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.layers.1.mlp.down_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 95]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 96]"), std::string::npos) << msg;

  auto missing = edited_copy("llama_untied", "missing", [](auto& t) {
    t.erase("model.norm.weight");
    t.erase("model.layers.0.mlp.up_proj.weight");
  });
  msg = error_of([&] { load_hf_weights(m, *k, missing.string()); });
  EXPECT_NE(msg.find("'model.norm.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.layers.0.mlp.up_proj.weight'"), std::string::npos) << msg;

  auto extra = edited_copy("llama_untied", "extra", [](auto& t) {
    t["model.layers.0.self_attn.q_proj.bias"] = Tensor::zeros({64}, DType::F32);
  });
  msg = error_of([&] { load_hf_weights(m, *k, extra.string()); });
  EXPECT_NE(msg.find("does not use"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.layers.0.self_attn.q_proj.bias'"), std::string::npos) << msg;

  // the model being loaded must have the directory's shape
  ModelConfig other = cfg;
  other.ffn_dim = 80;
  Decoder m_other(other, *k, DType::F32);
  msg = error_of([&] { load_hf_weights(m_other, *k, fixture("llama_untied").string()); });
  EXPECT_NE(msg.find("intermediate_size"), std::string::npos) << msg;

  // unknown architecture / unsupported rope: named with file and key
  TempDir arch_guard{fresh_dir("hf_arch")};
  const fs::path& arch = arch_guard.p;
  auto j = nlohmann::json::parse(read_file(fixture("llama_untied") / "config.json"));
  j["architectures"] = {"MistralForCausalLM"};
  write_file(arch / "config.json", j.dump());
  msg = error_of([&] { read_hf_model_info(arch.string()); });
  EXPECT_NE(msg.find((arch / "config.json").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("'architectures'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("MistralForCausalLM"), std::string::npos) << msg;
  j["architectures"] = {"LlamaForCausalLM"};
  j["rope_parameters"]["rope_type"] = "yarn";
  write_file(arch / "config.json", j.dump());
  msg = error_of([&] { read_hf_model_info(arch.string()); });
  EXPECT_NE(msg.find("rope_parameters.rope_type"), std::string::npos) << msg;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
  write_file(arch / "config.json", j.dump());
  EXPECT_FLOAT_EQ(read_hf_model_info(arch.string()).config.rope_theta, 5e5f);
  for (const auto& d : {bad_shape, missing, extra, arch}) fs::remove_all(d);
}

TEST(HfCheckpoint, DeckInitHfTakesShapeAndWeights) {
  auto k = make_cpu_kernels();
  const std::string dir = fixture("qwen3_untied").string();
  const Deck d = Deck::defaults({"--model.init=hf:" + dir, "--model.d_model=32"});
  const ModelConfig cfg = model_config_from_deck(d, 264);
  EXPECT_EQ(cfg.d_model, 64);  // config.json wins over the deck
  EXPECT_EQ(cfg.head_dim, 24);
  EXPECT_TRUE(cfg.qk_norm);
  Decoder m(cfg, *k, DType::F64);
  load_hf_weights(m, *k, hf_init_dir(d.get_string("model.init")));
  const auto ref = nlohmann::json::parse(read_file(fixture("qwen3_untied") / "reference.json"));
  EXPECT_LT(compare_to_reference(m, *k, ref).max_abs, 2e-5);
  // a tokenizer larger than the model's vocabulary is refused
  EXPECT_NE(error_of([&] { model_config_from_deck(d, 1000); }).find("vocab_size"), std::string::npos);
  EXPECT_THROW(model_config_from_deck(Deck::defaults({"--model.init=hf:"}), 264), Error);
}

// `temper export` on the checkpoint of a short SFT run re-imports to the same weights.
// With TEMPER_HF_EXPORT_KEEP=DIR set, the f32 export and temper's logits
// (temper_logits.json) stay in DIR/sft_qwen2_f32 for validation/hf/check_export.py
// (and the bf16 exports of the fixtures in DIR/<fixture>_bf16, by the test above).
TEST(HfCheckpoint, ExportSubcommandOnSftCheckpoint) {
  using temper_test::run_cmd;
  const std::string bin = temper_test::temper_bin();
  TempDir work_guard{fresh_dir("hf_cli")};
  const fs::path& work = work_guard.p;
  auto r = run_cmd(bin + " generate-tasks --out " + (work / "data").string() + " --seed 3 --train 40 --eval 4");
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(bin + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart.deck --run.output_dir=" +
              (work / "run").string() + " --data.train_files=" + (work / "data" / "sft_train.jsonl").string() +
              " --data.eval_file= --model.d_model=32 --model.n_layers=2 --model.n_heads=2 --model.n_kv_heads=1"
              " --model.ffn_dim=64 --model.qkv_bias=true --model.tie_embeddings=false --data.seq_len=128"
              " --data.micro_batch=2 --sft.steps=2 --sft.warmup_steps=1 --checkpoint.every=2");
  ASSERT_EQ(r.status, 0) << r.output;
  const char* keep = std::getenv("TEMPER_HF_EXPORT_KEEP");
  const fs::path out = keep ? fs::path(keep) / "sft_qwen2_f32" : work / "hf";
  r = run_cmd(bin + " export --checkpoint " + (work / "run").string() + " --out " + out.string() + " --dtype f32");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("Qwen2ForCausalLM"), std::string::npos) << r.output;

  const auto ckpt = CheckpointStore::load((work / "run" / "checkpoints" / "ckpt_000000002.h5").string());
  auto k = make_cpu_kernels();
  const HfModelInfo info = read_hf_model_info(out.string());
  EXPECT_EQ(info.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(info.config.vocab_size, 264);
  EXPECT_EQ(nlohmann::json::parse(read_file(out / "generation_config.json"))["eos_token_id"], 258);  // <|im_end|>
  Decoder m(info.config, *k, DType::F32);
  load_hf_weights(m, *k, out.string());
  for (const auto& p : m.params()) {
    const Tensor& want = ckpt.tensors.at("model/" + p.name);
    ASSERT_EQ(want.shape(), p.value.shape()) << p.name;
    int bad = 0;
    for (int64_t i = 0; i < want.numel(); ++i) bad += want.data<float>()[i] != p.value.data<float>()[i];
    EXPECT_EQ(bad, 0) << p.name;
  }
  if (keep) write_logits_json(m, *k, {257, 117, 115, 101, 114, 10, 50, 43, 50, 61, 258, 10, 257, 97}, out);

  // bf16 with a small shard limit, and a clear error for a bad option
  r = run_cmd(bin + " export --checkpoint " + (work / "run" / "checkpoints" / "ckpt_000000002.h5").string() +
              " --out " + (work / "hf16").string() + " --max-shard-mb 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(SafetensorsSet::open_dir((work / "hf16").string()).info("lm_head.weight").dtype, "BF16");
  r = run_cmd(bin + " export --checkpoint " + (work / "run").string() + " --out x --dtype f16");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--dtype"), std::string::npos) << r.output;
  r = run_cmd(bin + " --help");
  EXPECT_NE(r.output.find("temper export --checkpoint"), std::string::npos) << r.output;
  fs::remove_all(work);
}
