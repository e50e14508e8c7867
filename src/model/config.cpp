// ModelConfig checks, parameter counts, FLOPs per token and summary.
#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace temper {

AttentionKind attention_kind_from_name(const std::string& name) {
  if (name == "standard") return AttentionKind::Standard;
  if (name == "differential") return AttentionKind::Differential;
  if (name == "grouped_differential") return AttentionKind::GroupedDifferential;
  fail("attention '", name, "' is not one of standard, differential, grouped_differential");
}

const char* attention_kind_name(AttentionKind a) {
  switch (a) {
    case AttentionKind::Standard: return "standard";
    case AttentionKind::Differential: return "differential";
    case AttentionKind::GroupedDifferential: return "grouped_differential";
  }
  return "?";
}

MlpActivation mlp_activation_from_name(const std::string& name) {
  if (name == "swiglu") return MlpActivation::SwiGLU;
  if (name == "polynorm") return MlpActivation::PolyNorm;
  fail("mlp_activation '", name, "' is not one of swiglu, polynorm");
}

const char* mlp_activation_name(MlpActivation a) { return a == MlpActivation::PolyNorm ? "polynorm" : "swiglu"; }

double ModelConfig::lambda_init(int layer) const {
  if (diff_lambda_init >= 0.0f) return diff_lambda_init;
  return 0.8 - 0.6 * std::exp(-0.3 * double(layer - 1));  // Motif's released schedule (0-based layer)
}

void ModelConfig::validate() const {
  auto positive = [](const char* key, int64_t v) {
    TEMPER_CHECK(v > 0, "model config: ", key, " must be positive, got ", v);
  };
  positive("vocab_size", vocab_size);
  positive("d_model", d_model);
  positive("n_layers", n_layers);
  positive("n_heads", n_heads);
  positive("n_kv_heads", n_kv_heads);
  positive("head_dim", head_dim);
  positive("ffn_dim", ffn_dim);
  TEMPER_CHECK(n_heads % n_kv_heads == 0, "model config: n_heads (", n_heads,
               ") must be a multiple of n_kv_heads (", n_kv_heads, ") for grouped-query attention");
  TEMPER_CHECK(head_dim % 2 == 0, "model config: head_dim must be even for rotary embeddings, got ", head_dim);
  TEMPER_CHECK(rope_theta > 0.0f, "model config: rope_theta must be positive, got ", rope_theta);
  TEMPER_CHECK(norm_eps > 0.0f, "model config: norm_eps must be positive, got ", norm_eps);
  TEMPER_CHECK(init_std > 0.0f, "model config: init_std must be positive, got ", init_std);
  if (!differential()) {
    TEMPER_CHECK(n_noise_heads == 0, "model config: n_noise_heads (", n_noise_heads,
                 ") is only used by differential attention; attention is standard");
    return;
  }
  TEMPER_CHECK(n_noise_heads > 0, "model config: differential attention needs n_noise_heads > 0, got ",
               n_noise_heads);
  if (attention == AttentionKind::Differential)
    TEMPER_CHECK(n_noise_heads == n_heads, "model config: differential attention pairs every head with its own "
                 "noise-control head (n_noise_heads = n_heads = ", n_heads, ", got ", n_noise_heads,
                 "); use grouped_differential for unequal counts");
  TEMPER_CHECK(n_heads % n_noise_heads == 0, "model config: n_heads (", n_heads,
               ") must be a multiple of n_noise_heads (", n_noise_heads, ") for grouped differential attention");
  TEMPER_CHECK(n_noise_heads % n_kv_heads == 0, "model config: n_noise_heads (", n_noise_heads,
               ") must be a multiple of n_kv_heads (", n_kv_heads,
               ") so that each noise-control head's signal heads share one key/value head");
  TEMPER_CHECK(!qk_norm && !qkv_bias, "model config: differential attention does not support ",
               qk_norm ? "qk_norm" : "qkv_bias", " (Motif has neither)");
  TEMPER_CHECK(diff_lambda_init < 1.0f, "model config: diff_lambda_init must be below 1 (the output is scaled by "
               "1 - lambda_init), got ", diff_lambda_init);
  TEMPER_CHECK(diff_norm_eps > 0.0f, "model config: diff_norm_eps must be positive, got ", diff_norm_eps);
}

int64_t ModelConfig::embedding_params() const { return int64_t(vocab_size) * d_model; }

int64_t ModelConfig::attention_params_per_layer() const {
  const int64_t C = d_model, q = int64_t(n_heads) * head_dim, kv = int64_t(n_kv_heads) * head_dim;
  if (differential())  // q [(H+G)D, C], k and v [2 KVH D, C], o [C, 2HD], lambda [4, D], sub-layer norm [2D]
    return q_heads() * head_dim * C + 4 * kv * C + C * attn_out_dim() + 6 * int64_t(head_dim);
  int64_t n = q * C + 2 * kv * C + C * q;  // q, k, v, o weights
  if (qkv_bias) n += q + 2 * kv;
  if (qk_norm) n += 2 * int64_t(head_dim);
  return n;
}

int64_t ModelConfig::mlp_params_per_layer() const {
  return 3 * int64_t(ffn_dim) * d_model + (mlp_activation == MlpActivation::PolyNorm ? 4 : 0);
}

int64_t ModelConfig::norm_params() const { return (2 * int64_t(n_layers) + 1) * d_model; }

int64_t ModelConfig::head_params() const { return tie_embeddings ? 0 : embedding_params(); }

int64_t ModelConfig::param_count() const {
  return embedding_params() + n_layers * (attention_params_per_layer() + mlp_params_per_layer()) +
         norm_params() + head_params();
}

double ModelConfig::flops_per_token(int64_t seq_len) const {
  TEMPER_CHECK(seq_len > 0, "flops_per_token: seq_len must be positive, got ", seq_len);
  const double C = d_model, q = double(q_heads()) * head_dim, kv = double(n_kv_heads) * head_dim;
  const double attn_proj = differential() ? q * C + 4 * kv * C + C * double(attn_out_dim()) : q * C + 2 * kv * C + C * q;
  const double per_layer = attn_proj + 3.0 * ffn_dim * C;
  const double p_mm = n_layers * per_layer + double(vocab_size) * C;
  const double attn = (differential() ? 9.0 : 6.0) * n_layers * q * double(seq_len + 1);
  return 6.0 * p_mm + attn;
}

namespace {
std::string human(double x) {
  char buf[32];
  if (x >= 1e12) std::snprintf(buf, sizeof buf, "%.2fT", x / 1e12);
  else if (x >= 1e9) std::snprintf(buf, sizeof buf, "%.2fB", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", x / 1e6);
  else if (x >= 1e3) std::snprintf(buf, sizeof buf, "%.2fK", x / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}
}  // namespace

std::string ModelConfig::summary(int64_t seq_len) const {
  std::ostringstream os;
  os << "decoder: " << n_layers << " layers, d_model " << d_model << ", heads " << n_heads;
  if (differential())
    os << " signal + " << n_noise_heads << " noise (kv " << n_kv_heads << " per path, dim " << head_dim
       << ", values " << 2 * head_dim << ")";
  else
    os << " (kv " << n_kv_heads << ", dim " << head_dim << ")";
  os << ", ffn " << ffn_dim << ", vocab " << vocab_size << ", rope_theta " << rope_theta
     << (qk_norm ? ", qk_norm" : "") << (qkv_bias ? ", qkv_bias" : "")
     << (tie_embeddings ? ", tied embeddings" : ", untied head");
  if (differential()) os << ", " << attention_kind_name(attention) << " attention";
  if (mlp_activation != MlpActivation::SwiGLU) os << ", " << mlp_activation_name(mlp_activation) << " MLP";
  os << "\n";
  os << "  params: embedding " << human(double(embedding_params())) << ", attention "
     << human(double(n_layers) * attention_params_per_layer()) << ", mlp "
     << human(double(n_layers) * mlp_params_per_layer()) << ", norms " << human(double(norm_params()))
     << ", head " << human(double(head_params())) << "; total " << human(double(param_count())) << " ("
     << param_count() << ")\n";
  os << "  training FLOPs/token at seq_len " << seq_len << ": " << human(flops_per_token(seq_len));
  return os.str();
}

std::string ModelConfig::param_terms() const {
  const int64_t V = vocab_size, C = d_model, L = n_layers, D = head_dim, F = ffn_dim, KVH = n_kv_heads;
  std::ostringstream os;
  auto line = [&](const char* what, const std::string& formula, int64_t n) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%15lld", static_cast<long long>(n));
    os << "  " << what << buf << "  " << formula << "\n";
  };
  line("embedding ", cat(V, " vocab x ", C, " d_model"), embedding_params());
  if (differential()) {
    line("attention ", cat(L, " layers x (q ", q_heads(), " heads (", n_heads, " signal + ", n_noise_heads,
                           " noise) x ", D, " x ", C, " + k, v 2 x ", 2 * KVH, " heads x ", D, " x ", C, " + o ", C,
                           " x ", attn_out_dim(), " + lambda 4 x ", D, " + sub-layer norm ", 2 * D, ")"),
         n_layers * attention_params_per_layer());
  } else {
    line("attention ", cat(L, " layers x (q ", n_heads, " x ", D, " x ", C, " + k, v 2 x ", KVH, " x ", D, " x ", C,
                           " + o ", C, " x ", attn_out_dim(), qkv_bias ? " + q, k, v biases" : "",
                           qk_norm ? " + q, k norms 2 x " + std::to_string(D) : "", ")"),
         n_layers * attention_params_per_layer());
  }
  line("mlp       ", cat(L, " layers x (gate, up, down 3 x ", F, " x ", C,
                         mlp_activation == MlpActivation::PolyNorm ? " + PolyNorm 3 weights + 1 bias" : "", ")"),
       n_layers * mlp_params_per_layer());
  line("norms     ", cat("(2 x ", L, " layers + final) x ", C), norm_params());
  line("head      ", tie_embeddings ? std::string("tied to the embedding") : cat(V, " vocab x ", C, " d_model (untied)"),
       head_params());
  line("total     ", "", param_count());
  return os.str();
}

ModelConfig model_config_from_hf_json(const std::string& json_text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": not valid JSON (", e.what(), ")");
  }
  TEMPER_CHECK(j.is_object(), source, ": expected a JSON object at the top level");
  auto get_int = [&](const char* key, int fallback, bool required) -> int {
    if (!j.contains(key) || j[key].is_null()) {
      TEMPER_CHECK(!required, source, ": missing key '", key, "'");
      return fallback;
    }
    TEMPER_CHECK(j[key].is_number_integer(), source, ": key '", key, "' must be an integer, got ", j[key].dump());
    return j[key].get<int>();
  };
  auto get_float = [&](const char* key, double fallback) -> float {
    if (!j.contains(key) || j[key].is_null()) return float(fallback);
    TEMPER_CHECK(j[key].is_number(), source, ": key '", key, "' must be a number, got ", j[key].dump());
    return j[key].get<float>();
  };
  auto get_bool = [&](const char* key, bool fallback) -> bool {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    TEMPER_CHECK(j[key].is_boolean(), source, ": key '", key, "' must be true or false, got ", j[key].dump());
    return j[key].get<bool>();
  };
  const std::string type = j.value("model_type", std::string());
  TEMPER_CHECK(type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3" || type == "motif", source,
               ": model_type '", type, "' is not supported (expected llama, mistral, qwen2, qwen3 or motif)");
  TEMPER_CHECK(!j.contains("rope_scaling") || j["rope_scaling"].is_null(), source,
               ": rope_scaling is not supported (got ", j.contains("rope_scaling") ? j["rope_scaling"].dump() : "",
               ")");
  TEMPER_CHECK(!get_bool("use_sliding_window", false), source, ": use_sliding_window=true is not supported");
  const bool motif = type == "motif";
  const std::string act = j.value("hidden_act", std::string(motif ? "poly_norm" : "silu"));
  TEMPER_CHECK(act == (motif ? "poly_norm" : "silu"), source, ": hidden_act '", act, "' is not supported (",
               motif ? "a Motif model has poly_norm" : "only silu / SwiGLU", ")");

  ModelConfig c;
  c.vocab_size = get_int("vocab_size", 0, true);
  c.d_model = get_int("hidden_size", 0, true);
  c.n_layers = get_int("num_hidden_layers", 0, true);
  c.n_heads = get_int("num_attention_heads", 0, true);
  c.n_kv_heads = get_int("num_key_value_heads", c.n_heads, false);
  c.head_dim = get_int("head_dim", c.n_heads > 0 ? c.d_model / c.n_heads : 0, false);
  c.ffn_dim = get_int("intermediate_size", 0, true);
  c.rope_theta = get_float("rope_theta", 10000.0);
  c.norm_eps = get_float("rms_norm_eps", 1e-6);
  c.init_std = get_float("initializer_range", 0.02);
  c.tie_embeddings = get_bool("tie_word_embeddings", false);
  c.qk_norm = type == "qwen3";
  c.qkv_bias = type == "qwen2" ? true : get_bool("attention_bias", false);
  if (motif) {
    // num_attention_heads counts signal + noise query heads, num_key_value_heads both key paths;
    // without num_noise_heads every signal head has its own noise head (Motif-2.6B).
    const int total = c.n_heads, kv_total = c.n_kv_heads;
    TEMPER_CHECK(!get_bool("use_bias", false) && !c.qkv_bias, source,
                 ": use_bias / attention_bias = true is not supported (Motif's released models have no biases)");
    TEMPER_CHECK(get_int("k_ratio", 1, false) == 1, source, ": k_ratio ", get_int("k_ratio", 1, false),
                 " is not supported (the released models have k_ratio 1: one noise key head per signal key head)");
    TEMPER_CHECK(kv_total % 2 == 0, source, ": num_key_value_heads (", kv_total,
                 ") must be even: half are the signal keys, half the noise-control keys");
    const int noise = get_int("num_noise_heads", total / 2, false);
    TEMPER_CHECK(noise > 0 && noise < total, source, ": num_noise_heads (", noise,
                 ") must be positive and below num_attention_heads (", total, ")");
    TEMPER_CHECK(total % noise == 0, source, ": num_attention_heads (", total, ") - num_noise_heads (", noise,
                 ") = ", total - noise, " signal heads, not a multiple of num_noise_heads (each noise-control head "
                 "serves the same number of signal heads)");
    c.n_heads = total - noise;
    c.n_noise_heads = noise;
    c.n_kv_heads = kv_total / 2;
    c.attention = c.n_heads == noise ? AttentionKind::Differential : AttentionKind::GroupedDifferential;
    c.mlp_activation = MlpActivation::PolyNorm;
    c.diff_norm_eps = get_float("attn_rms_norm_eps", 1e-5);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail(source, ": ", e.what());
  }
  return c;
}

ModelConfig load_hf_config(const std::string& path) {
  std::ifstream f(path);
  TEMPER_CHECK(f.good(), "cannot open the model config '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return model_config_from_hf_json(ss.str(), path);
}

}  // namespace temper
