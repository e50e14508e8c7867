// A small decoder shape for tests, in one call.
#pragma once
#include "model/config.h"

namespace temper_test {

struct Shape7 {
  int vocab, d_model, layers, heads, kv_heads, head_dim, ffn;
};

inline temper::ModelConfig small_model(Shape7 s, bool qk_norm, bool qkv_bias, bool tied, float init_std = 0.02f) {
  temper::ModelConfig c;
  c.vocab_size = s.vocab;
  c.d_model = s.d_model;
  c.n_layers = s.layers;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.ffn_dim = s.ffn;
  c.rope_theta = 100.0f;
  c.init_std = init_std;
  c.qk_norm = qk_norm;
  c.qkv_bias = qkv_bias;
  c.tie_embeddings = tied;
  return c;
}

}  // namespace temper_test
