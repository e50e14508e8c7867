// Random-init model shapes shared by the benchmark programs (the published
// Qwen2 configs; rope theta and eps do not affect speed), and the parsing of
// their comma-separated list flags.
#pragma once
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/config.h"

namespace temper {

inline ModelConfig bench_shape_config(const std::string& name) {
  ModelConfig c;
  c.rope_theta = 1e6f;
  c.norm_eps = 1e-6f;
  c.qkv_bias = true;
  c.tie_embeddings = true;
  if (name == "qwen2-0.5b") {
    c.vocab_size = 151936, c.d_model = 896, c.n_layers = 24, c.n_heads = 14, c.n_kv_heads = 2, c.head_dim = 64;
    c.ffn_dim = 4864;
  } else if (name == "qwen2-1.5b") {
    c.vocab_size = 151936, c.d_model = 1536, c.n_layers = 28, c.n_heads = 12, c.n_kv_heads = 2, c.head_dim = 128;
    c.ffn_dim = 8960;
  } else if (name == "tiny") {
    c.vocab_size = 512, c.d_model = 128, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 32;
    c.ffn_dim = 256;
  } else {
    fail("unknown benchmark shape '", name, "' (qwen2-0.5b, qwen2-1.5b, tiny)");
  }
  c.validate();
  return c;
}

// "a,b,,c" -> {"a", "b", "c"} (empty fields skipped)
inline std::vector<std::string> bench_split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

// "64,256" -> {64, 256}
inline std::vector<int> bench_split_ints(const std::string& s) {
  std::vector<int> out;
  for (const std::string& x : bench_split(s)) out.push_back(std::stoi(x));
  return out;
}

}  // namespace temper
