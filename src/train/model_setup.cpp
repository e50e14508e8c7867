#include "train/model_setup.h"

namespace temper {

ModelConfig model_config_from_deck(const Deck& d, int tokenizer_vocab) {
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
  c.validate();
  return c;
}

std::unique_ptr<Tokenizer> tokenizer_from_deck(const Deck& d) {
  std::string t = d.get_string("data.tokenizer");
  if (t == "byte") return make_byte_tokenizer();
  fail("data.tokenizer = '", t, "': only the byte-level tokenizer ('byte') is available in this build");
}

}  // namespace temper
