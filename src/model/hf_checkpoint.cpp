// Hugging Face directories <-> Decoder: config.json mapping, checked weight import,
// export as config.json + generation_config.json + safetensors shards + tokenizer files.
#include "model/hf_checkpoint.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/decoder.h"

namespace temper {

namespace fs = std::filesystem;

namespace {

const char* const kArchitectures[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MotifForCausalLM"};

std::string model_type_of(const std::string& arch) {
  if (arch == "LlamaForCausalLM") return "llama";
  if (arch == "Qwen2ForCausalLM") return "qwen2";
  if (arch == "MotifForCausalLM") return "motif";
  return "qwen3";
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TEMPER_CHECK(in.good(), "cannot open '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& path, const std::string& text) {
  const std::string partial = path.string() + ".partial";
  {
    std::ofstream out(partial, std::ios::trunc);
    out << text;
    out.close();  // the text sits in the stream's buffer until here: a full disk shows at the close
    TEMPER_CHECK(out.good(), "cannot write '", partial, "'");
  }
  std::error_code ec;
  fs::rename(partial, path, ec);
  TEMPER_CHECK(!ec, "cannot rename '", partial, "' to '", path.string(), "': ", ec.message());
}

// A float as the shortest decimal that reads back to the same float (1e-6f -> 1e-06, not 9.99999997e-07).
double tidy(float x) {
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, double(x));
    if (std::strtof(buf, nullptr) == x) break;
  }
  return std::strtod(buf, nullptr);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string list_some(const std::vector<std::string>& v, size_t max_shown = 8) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max_shown; ++i) s += (i ? ", '" : "'") + v[i] + "'";
  if (v.size() > max_shown) s += cat(" and ", v.size() - max_shown, " more");
  return s;
}

}  // namespace

HfModelInfo read_hf_model_info(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  TEMPER_CHECK(fs::exists(path), "'", dir, "' is not a Hugging Face model directory: it has no config.json");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON (", e.what(), ")");
  }
  TEMPER_CHECK(j.is_object(), path, ": expected a JSON object at the top level");
  TEMPER_CHECK(j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
                   j["architectures"][0].is_string(),
               path, ": key 'architectures' is missing or not a list of names");
  HfModelInfo info;
  info.architecture = j["architectures"][0].get<std::string>();
  bool known = false;
  for (const char* a : kArchitectures) known = known || info.architecture == a;
  TEMPER_CHECK(known, path, ": key 'architectures' names '", info.architecture,
               "', which temper cannot load (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM or MotifForCausalLM)");
  const std::string type = j.value("model_type", std::string());
  TEMPER_CHECK(type == model_type_of(info.architecture), path, ": key 'model_type' is '", type, "' but '",
               info.architecture, "' needs '", model_type_of(info.architecture), "'");
  // transformers >= 5 keeps rope_theta inside rope_parameters.
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    const auto& rp = j["rope_parameters"];
    TEMPER_CHECK(rp.is_object(), path, ": key 'rope_parameters' must be an object");
    const std::string rt = rp.value("rope_type", std::string("default"));
    TEMPER_CHECK(rt == "default", path, ": key 'rope_parameters.rope_type' is '", rt,
                 "'; only plain RoPE ('default') is supported");
    if (rp.contains("rope_theta")) j["rope_theta"] = rp["rope_theta"];
    j.erase("rope_parameters");
  }
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const auto& rs = j["rope_scaling"];
    const std::string rt = rs.value("rope_type", rs.value("type", std::string()));
    if (rt == "default") j.erase("rope_scaling");  // plain RoPE spelled out; other types are refused below
  }
  if (j.contains("layer_types") && j["layer_types"].is_array())
    for (const auto& lt : j["layer_types"])
      TEMPER_CHECK(lt == "full_attention", path, ": key 'layer_types' has '", lt.dump(),
                   "'; only full_attention layers are supported");
  TEMPER_CHECK(!j.value("mlp_bias", false), path, ": key 'mlp_bias' is true; temper's MLP has no biases");
  info.o_proj_bias = info.architecture != "Qwen2ForCausalLM" && j.contains("attention_bias") &&
                     j["attention_bias"].is_boolean() && j["attention_bias"].get<bool>();
  info.config = model_config_from_hf_json(j.dump(), path);
  return info;
}

std::string hf_architecture_for(const ModelConfig& c) {
  if (c.differential()) {
    TEMPER_CHECK(c.mlp_activation == MlpActivation::PolyNorm, "Hugging Face export: ", attention_kind_name(c.attention),
                 " attention is exported as MotifForCausalLM, whose MLP is PolyNorm; this model has a ",
                 mlp_activation_name(c.mlp_activation), " MLP (no released architecture has that combination)");
    return "MotifForCausalLM";
  }
  TEMPER_CHECK(c.mlp_activation == MlpActivation::SwiGLU, "Hugging Face export: standard attention with a ",
               mlp_activation_name(c.mlp_activation), " MLP has no released architecture (Llama/Qwen need swiglu, "
               "Motif needs grouped_differential or differential attention)");
  if (c.qk_norm) return "Qwen3ForCausalLM";
  if (c.qkv_bias) return "Qwen2ForCausalLM";
  return "LlamaForCausalLM";
}

std::vector<HfParamMap> hf_param_maps(const ModelConfig& c) {
  hf_architecture_for(c);  // refuses the combinations no released model has
  const int64_t V = c.vocab_size, C = c.d_model, H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim, F = c.ffn_dim;
  const bool diff = c.differential();
  std::vector<HfParamMap> m;
  auto one = [&](const std::string& name, const Shape& shape, const std::string& hf) {
    m.push_back({name, shape, {hf}, {shape}});
  };
  one("embed", {V, C}, "model.embed_tokens.weight");
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string t = cat("layers.", i, "."), h = cat("model.layers.", i, ".");
    one(t + "attn_norm.weight", {C}, h + "input_layernorm.weight");
    const int64_t q_rows = c.q_heads() * D, kv_rows = (diff ? 2 : 1) * KVH * D;
    for (const char* p : {"q", "k", "v"}) {
      const int64_t rows = std::string(p) == "q" ? q_rows : kv_rows;
      one(t + "attn." + p + ".weight", {rows, C}, h + "self_attn." + p + "_proj.weight");
    }
    if (c.qkv_bias)
      for (const char* p : {"q", "k", "v"})
        one(t + "attn." + p + ".bias", {std::string(p) == "q" ? H * D : KVH * D}, h + "self_attn." + p + "_proj.bias");
    if (c.qk_norm)
      for (const char* p : {"q", "k"}) one(t + "attn." + p + "_norm.weight", {D}, h + "self_attn." + p + "_norm.weight");
    if (diff) {
      m.push_back({t + "attn.lambda", {4, D},
                   {h + "self_attn.lambda_q1", h + "self_attn.lambda_k1", h + "self_attn.lambda_q2",
                    h + "self_attn.lambda_k2"},
                   {{D}, {D}, {D}, {D}}});
      one(t + "attn.head_norm.weight", {2 * D}, h + "self_attn.subln.weight");
    }
    one(t + "attn.o.weight", {C, c.attn_out_dim()}, h + "self_attn.o_proj.weight");
    one(t + "mlp_norm.weight", {C}, h + "post_attention_layernorm.weight");
    m.push_back({t + "mlp.gate_up.weight", {2 * F, C}, {h + "mlp.gate_proj.weight", h + "mlp.up_proj.weight"},
                 {{F, C}, {F, C}}});
    one(t + "mlp.down.weight", {C, F}, h + "mlp.down_proj.weight");
    if (c.mlp_activation == MlpActivation::PolyNorm)
      m.push_back({t + "mlp.polynorm", {4}, {h + "mlp.act_fn.weight", h + "mlp.act_fn.bias"}, {{3}, {1}}});
  }
  one("final_norm.weight", {C}, "model.norm.weight");
  if (!c.tie_embeddings) one("lm_head.weight", {V, C}, "lm_head.weight");
  return m;
}

std::string hf_init_dir(const std::string& v) {
  if (v.rfind("hf:", 0) != 0) return "";
  TEMPER_CHECK(v.size() > 3, "[model] init = 'hf:' needs a directory after the colon (hf:/path/to/model)");
  return v.substr(3);
}

namespace {

void check_same_shape(const ModelConfig& a, const ModelConfig& b, const std::string& src) {
  auto eq = [&](const char* what, double x, double y) {
    TEMPER_CHECK(x == y, src, " describes a model with ", what, " = ", y, " but the model being loaded has ", x);
  };
  eq("vocab_size", a.vocab_size, b.vocab_size);
  eq("hidden_size", a.d_model, b.d_model);
  eq("num_hidden_layers", a.n_layers, b.n_layers);
  eq("num_attention_heads", a.n_heads, b.n_heads);
  eq("num_key_value_heads", a.n_kv_heads, b.n_kv_heads);
  eq("head_dim", a.head_dim, b.head_dim);
  eq("intermediate_size", a.ffn_dim, b.ffn_dim);
  eq("rope_theta", a.rope_theta, b.rope_theta);
  eq("rms_norm_eps", a.norm_eps, b.norm_eps);
  eq("qk_norm", a.qk_norm, b.qk_norm);
  eq("qkv_bias", a.qkv_bias, b.qkv_bias);
  eq("tie_word_embeddings", a.tie_embeddings, b.tie_embeddings);
  eq("differential attention (num_noise_heads > 0)", a.differential(), b.differential());
  eq("num_noise_heads", a.n_noise_heads, b.n_noise_heads);
  eq("PolyNorm MLP (hidden_act poly_norm)", a.mlp_activation == MlpActivation::PolyNorm,
     b.mlp_activation == MlpActivation::PolyNorm);
  if (a.differential()) eq("attn_rms_norm_eps", a.diff_norm_eps, b.diff_norm_eps);
}

}  // namespace

void load_hf_weights(Decoder& model, Kernels& k, const std::string& dir) {
  const HfModelInfo info = read_hf_model_info(dir);
  const ModelConfig& cfg = model.config();
  check_same_shape(cfg, info.config, (fs::path(dir) / "config.json").string());
  const SafetensorsSet set = SafetensorsSet::open_dir(dir);
  const auto maps = hf_param_maps(cfg);

  std::set<std::string> expected;
  std::vector<std::string> missing;
  for (const auto& m : maps)
    for (const auto& h : m.hf_names) {
      expected.insert(h);
      if (!set.contains(h)) missing.push_back(h);
    }
  TEMPER_CHECK(missing.empty(), "model directory '", dir, "' lacks ", missing.size(), " tensor(s) a ",
               info.architecture, " with this config.json needs: ", list_some(missing));
  for (const auto& m : maps)
    for (size_t i = 0; i < m.hf_names.size(); ++i) {
      const std::string& h = m.hf_names[i];
      const auto& got = set.info(h).shape;
      TEMPER_CHECK(got == m.hf_shapes[i], set.file_of(h), ": tensor '", h, "' has shape ", shape_str(got), " but ",
                   dir, "/config.json implies ", shape_str(m.hf_shapes[i]), " (temper parameter '", m.name, "')");
    }
  std::vector<std::string> unexpected;
  std::vector<std::string> o_biases;
  for (const auto& n : set.names()) {
    if (expected.count(n)) continue;
    if (ends_with(n, ".rotary_emb.inv_freq")) continue;  // a buffer
    if (cfg.tie_embeddings && n == "lm_head.weight" && set.info(n).shape == maps.front().shape) continue;  // tied copy
    if (info.o_proj_bias && ends_with(n, ".self_attn.o_proj.bias")) {
      o_biases.push_back(n);
      continue;
    }
    unexpected.push_back(n);
  }
  TEMPER_CHECK(unexpected.empty(), "model directory '", dir, "' has ", unexpected.size(),
               " tensor(s) temper's ", info.architecture, " does not use: ", list_some(unexpected),
               " (first in '", set.file_of(unexpected.front()), "')");
  for (const auto& n : o_biases) {
    Tensor b = set.read_f32(n);
    for (int64_t i = 0; i < b.numel(); ++i)
      TEMPER_CHECK(b.data<float>()[i] == 0.0f, set.file_of(n), ": tensor '", n,
                   "' is non-zero, but temper's attention has no output-projection bias");
  }

  for (const auto& m : maps) {
    Tensor host;
    if (m.hf_names.size() == 1) {
      host = set.read_f32(m.hf_names[0]).reshape(m.shape);
    } else {
      host = Tensor::empty(m.shape, DType::F32);
      int64_t at = 0;
      for (const auto& h : m.hf_names) {
        Tensor t = set.read_f32(h);
        std::copy(t.data<float>(), t.data<float>() + t.numel(), host.data<float>() + at);
        at += t.numel();
      }
    }
    k.copy(model.param(m.name).value, host);
  }
  model.refresh_compute();
}

std::string hf_config_json(const ModelConfig& c, const HfExportOptions& o) {
  TEMPER_CHECK(o.dtype == DType::BF16 || o.dtype == DType::F32, "export: dtype must be bf16 or f32, got ",
               dtype_name(o.dtype));
  c.validate();
  const std::string arch = hf_architecture_for(c);
  const std::string dtype = o.dtype == DType::BF16 ? "bfloat16" : "float32";
  nlohmann::json j;
  j["architectures"] = {arch};
  j["model_type"] = model_type_of(arch);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.d_model;
  j["intermediate_size"] = c.ffn_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.q_heads();  // Motif: signal + noise-control heads
  j["num_key_value_heads"] = (c.differential() ? 2 : 1) * c.n_kv_heads;  // Motif: both key paths
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = c.differential() ? "poly_norm" : "silu";
  j["max_position_embeddings"] = o.max_position_embeddings;
  j["rms_norm_eps"] = tidy(c.norm_eps);
  j["initializer_range"] = tidy(c.init_std);
  // Both spellings: top-level rope_theta (transformers 4, vLLM) and rope_parameters (transformers 5).
  j["rope_theta"] = tidy(c.rope_theta);
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", tidy(c.rope_theta)}};
  j["rope_scaling"] = nullptr;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["torch_dtype"] = dtype;  // transformers 4
  j["dtype"] = dtype;        // transformers 5
  j["attention_dropout"] = 0.0;
  j["use_cache"] = true;
  j["bos_token_id"] = o.bos_token_id >= 0 ? nlohmann::json(o.bos_token_id) : nlohmann::json(nullptr);
  j["eos_token_id"] = o.eos_token_id >= 0 ? nlohmann::json(o.eos_token_id) : nlohmann::json(nullptr);
  if (arch == "MotifForCausalLM") {
    // The keys Motif's released config.json and model code read (docs/motif.md); lambda_init follows
    // the code's depth schedule, so a fixed model.diff_lambda_init cannot be exported.
    TEMPER_CHECK(c.diff_lambda_init < 0, "Hugging Face export: model.diff_lambda_init = ", c.diff_lambda_init,
                 " is fixed, but Motif's model code computes lambda_init from the depth (set it to -1)");
    j["num_noise_heads"] = c.n_noise_heads;
    j["attn_rms_norm_eps"] = tidy(c.diff_norm_eps);
    j["k_ratio"] = 1;
    j["use_bias"] = false;
    j["attention_bias"] = false;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["auto_map"] = {{"AutoConfig", "configuration_motif.MotifConfig"},
                     {"AutoModelForCausalLM", "modeling_motif.MotifForCausalLM"}};
  } else if (arch == "LlamaForCausalLM") {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  } else {
    // Qwen2 always has q/k/v biases (no attention_bias key); Qwen3 takes attention_bias for q/k/v/o.
    if (arch == "Qwen3ForCausalLM") j["attention_bias"] = c.qkv_bias;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = c.n_layers;
  }
  return j.dump(2) + "\n";
}

std::vector<std::string> export_hf(const ModelConfig& cfg, const std::map<std::string, Tensor>& params,
                                   const std::string& out_dir, const HfExportOptions& o) {
  const std::string config_text = hf_config_json(cfg, o);  // validates cfg and dtype first
  const auto maps = hf_param_maps(cfg);
  std::set<std::string> known;
  NamedTensors tensors;
  std::vector<Tensor> keep;  // zero o_proj biases outlive `tensors`
  for (const auto& m : maps) {
    known.insert(m.name);
    auto it = params.find(m.name);
    TEMPER_CHECK(it != params.end(), "export: parameter '", m.name, "' is missing (the weights do not match the ",
                 "model config)");
    const Tensor& t = it->second;
    TEMPER_CHECK(t.shape() == m.shape, "export: parameter '", m.name, "' has shape ", shape_str(t.shape()),
                 " but the model config implies ", shape_str(m.shape));
    if (m.hf_names.size() == 1) {
      tensors.emplace_back(m.hf_names[0], t.reshape(m.hf_shapes[0]));
    } else {
      const Tensor flat = t.reshape({t.numel()});
      int64_t at = 0;
      for (size_t i = 0; i < m.hf_names.size(); ++i) {
        const int64_t n = shape_numel(m.hf_shapes[i]);
        tensors.emplace_back(m.hf_names[i], flat.rows(at, at + n).reshape(m.hf_shapes[i]));
        at += n;
      }
    }
    // Qwen3 with q/k/v biases is attention_bias = true, which gives o_proj a bias too: write zeros.
    if (cfg.qk_norm && cfg.qkv_bias && ends_with(m.name, ".attn.o.weight")) {
      keep.push_back(Tensor::zeros({cfg.d_model}, DType::F32));
      tensors.emplace_back(m.hf_names[0].substr(0, m.hf_names[0].size() - 6) + "bias", keep.back());
    }
  }
  for (const auto& kv : params)
    TEMPER_CHECK(known.count(kv.first), "export: parameter '", kv.first, "' does not belong to a ",
                 hf_architecture_for(cfg), " of this config");

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  TEMPER_CHECK(!ec, "export: cannot create '", out_dir, "': ", ec.message());
  std::vector<std::string> written = write_safetensors_sharded(out_dir, tensors, o.dtype, o.max_shard_bytes);

  write_text(fs::path(out_dir) / "config.json", config_text);
  written.push_back("config.json");
  nlohmann::json g;
  g["_from_model_config"] = true;
  if (o.bos_token_id >= 0) g["bos_token_id"] = o.bos_token_id;
  if (o.eos_token_id >= 0) g["eos_token_id"] = o.eos_token_id;
  write_text(fs::path(out_dir) / "generation_config.json", g.dump(2) + "\n");
  written.push_back("generation_config.json");

  if (!o.tokenizer_dir.empty()) {
    TEMPER_CHECK(fs::is_directory(o.tokenizer_dir), "export: tokenizer directory '", o.tokenizer_dir,
                 "' does not exist");
    int copied = 0;
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                          "merges.txt", "added_tokens.json", "tokenizer.model", "chat_template.jinja",
                          "chat_template.json", "configuration_motif.py", "modeling_motif.py"}) {
      const fs::path src = fs::path(o.tokenizer_dir) / f;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, fs::path(out_dir) / f, fs::copy_options::overwrite_existing, ec);
      TEMPER_CHECK(!ec, "export: cannot copy '", src.string(), "' to '", out_dir, "': ", ec.message());
      written.push_back(f);
      ++copied;
    }
    TEMPER_CHECK(copied > 0, "export: tokenizer directory '", o.tokenizer_dir,
                 "' has no tokenizer files (tokenizer.json, tokenizer_config.json, ...)");
  }
  return written;
}

std::vector<std::string> export_hf(const Decoder& model, Kernels& k, const std::string& out_dir,
                                   const HfExportOptions& o) {
  std::map<std::string, Tensor> host;
  for (const auto& p : model.params()) {
    Tensor t = Tensor::empty(p.value.shape(), p.value.dtype());
    k.copy(t, p.value);
    host[p.name] = t;
  }
  return export_hf(model.config(), host, out_dir, o);
}

}  // namespace temper
