#include "train/model_setup.h"

#include "tokenizer/bpe_tokenizer.h"

#include "core/log.h"
#include "model/hf_checkpoint.h"

namespace temper {

ModelConfig model_config_from_deck(const Deck& d, int tokenizer_vocab) {
  // [model] init = hf:DIR: the shape comes from DIR/config.json, not from the deck's [model] keys.
  const std::string hf_dir = hf_init_dir(d.get_string("model.init"));
  if (!hf_dir.empty()) {
    HfModelInfo info = read_hf_model_info(hf_dir);
    TEMPER_CHECK(info.config.vocab_size >= tokenizer_vocab, hf_dir, "/config.json: vocab_size ",
                 info.config.vocab_size, " is smaller than the tokenizer's ", tokenizer_vocab, " tokens");
    log_info("model.init = hf:", hf_dir, ": architecture ", info.architecture, " and shape from ", hf_dir,
             "/config.json override the deck's [model] keys");
    return info.config;
  }
  ModelConfig c;
  c.vocab_size = int(d.get_int("model.vocab_size"));
  if (c.vocab_size == 0) c.vocab_size = tokenizer_vocab;
  TEMPER_CHECK(c.vocab_size >= tokenizer_vocab, "model.vocab_size = ", c.vocab_size, " (", d.where("model.vocab_size"),
               ") is smaller than the tokenizer's ", tokenizer_vocab, " tokens");
  c.d_model = int(d.get_int("model.d_model"));
  c.n_layers = int(d.get_int("model.n_layers"));
  c.n_heads = int(d.get_int("model.n_heads"));
  c.n_kv_heads = int(d.get_int("model.n_kv_heads"));
  c.head_dim = int(d.get_int("model.head_dim"));
  if (c.head_dim == 0 && c.n_heads > 0) c.head_dim = c.d_model / c.n_heads;
  c.ffn_dim = int(d.get_int("model.ffn_dim"));
  c.rope_theta = float(d.get_float("model.rope_theta"));
  c.norm_eps = float(d.get_float("model.norm_eps"));
  c.init_std = float(d.get_float("model.init_std"));
  c.qk_norm = d.get_bool("model.qk_norm");
  c.qkv_bias = d.get_bool("model.qkv_bias");
  c.tie_embeddings = d.get_bool("model.tie_embeddings");
  c.attention = attention_kind_from_name(d.get_string("model.attention"));
  if (c.attention == AttentionKind::Differential) {
    c.n_noise_heads = c.n_heads;
  } else if (c.attention == AttentionKind::GroupedDifferential) {
    c.n_noise_heads = int(d.get_int("model.gda_noise_heads"));
    if (c.n_noise_heads == 0) c.n_noise_heads = c.n_heads / int(d.get_int("model.gda_ratio"));
  }
  c.diff_lambda_init = float(d.get_float("model.diff_lambda_init"));
  c.diff_norm_eps = float(d.get_float("model.diff_norm_eps"));
  c.mlp_activation = mlp_activation_from_name(d.get_string("model.mlp_activation"));
  c.validate();
  return c;
}

Checkpointing checkpointing_from_deck(const Deck& d) {
  return checkpointing_from_name(d.get_string("model.activation_checkpointing"));
}

RecomputeParts recompute_parts_from_deck(const Deck& d) {
  try {
    return recompute_parts_from_names(d.get_list("model.recompute"));
  } catch (const Error& e) {
    fail("model.recompute (", d.where("model.recompute"), "): ", e.what());
  }
}

std::unique_ptr<Tokenizer> tokenizer_from_deck(const Deck& d) {
  const std::string t = d.get_string("data.tokenizer");
  try {
    return make_tokenizer(t);
  } catch (const Error& e) {
    fail("data.tokenizer = '", t, "' (", d.where("data.tokenizer"), "): ", e.what());
  }
}

ChatTemplate chat_template_from_deck(const Deck& d) {
  try {
    return resolve_chat_template(d.get_string("data.chat_template"), d.get_string("data.tokenizer"));
  } catch (const Error& e) {
    fail("data.chat_template (", d.where("data.chat_template"), "): ", e.what());
  }
}

}  // namespace temper
