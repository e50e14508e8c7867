// ModelConfig: the shape of a Llama / Qwen2 / Qwen3-style decoder, its checks,
// parameter count and training FLOPs per token. No deck dependency: the training
// code maps deck keys (or an HF config.json) onto this struct.
#pragma once
#include <cstdint>
#include <string>

namespace temper {

// Attention of every layer (model/differential_attention.h has the equations).
enum class AttentionKind { Standard, Differential, GroupedDifferential };
AttentionKind attention_kind_from_name(const std::string& name);  // standard | differential | grouped_differential
const char* attention_kind_name(AttentionKind a);
// Activation of the MLP on the fused gate|up projection: silu(gate) * up or PolyNorm(gate) * up.
enum class MlpActivation { SwiGLU, PolyNorm };
MlpActivation mlp_activation_from_name(const std::string& name);  // swiglu | polynorm
const char* mlp_activation_name(MlpActivation a);

struct ModelConfig {
  int vocab_size = 0;
  int d_model = 0;      // C, the residual width
  int n_layers = 0;     // L
  int n_heads = 0;      // H query heads
  int n_kv_heads = 0;   // KVH key/value heads (GQA); H % KVH == 0
  int head_dim = 0;     // D (need not equal d_model / n_heads, e.g. Qwen3); even (RoPE)
  int ffn_dim = 0;      // F, the SwiGLU hidden width
  float rope_theta = 10000.0f;
  float norm_eps = 1e-6f;
  float init_std = 0.02f;
  bool qk_norm = false;         // Qwen3: RMSNorm over each head's q and k before RoPE
  bool qkv_bias = false;        // Qwen2: biases on the q, k, v projections
  bool tie_embeddings = true;   // output head shares the embedding matrix
  // Motif architecture. Differential attention has G = n_noise_heads noise-control
  // heads (differential: G = H; grouped_differential: H % G == 0, G % KVH == 0).
  AttentionKind attention = AttentionKind::Standard;
  int n_noise_heads = 0;           // G; 0 with Standard
  float diff_lambda_init = -1.0f;  // < 0: 0.8 - 0.6 exp(-0.3 l) for 0-based layer l
  MlpActivation mlp_activation = MlpActivation::SwiGLU;
  bool differential() const { return attention != AttentionKind::Standard; }
  float lambda_init(int layer) const;  // lambda_init of 0-based layer `layer`

  // Throws temper::Error naming the first offending field.
  void validate() const;

  // Parameter counts (elements), by group; param_count() is their sum.
  int64_t embedding_params() const;        // V*C
  int64_t attention_params_per_layer() const;  // q,k,v,o weights (+ q,k,v biases, + q/k norm weights)
                                               // (+ q2, k2, lambda [4,D], head norm [D] when differential)
  int64_t mlp_params_per_layer() const;    // gate|up [2F,C] and down [C,F] (+ 4 PolyNorm coefficients)
  int64_t norm_params() const;             // 2 per layer + final, C each
  int64_t head_params() const;             // V*C when untied, else 0
  int64_t param_count() const;

  // Training (forward + backward) FLOPs per token for documents of seq_len tokens:
  //   6 * P_mm  +  6 * L * H * D * (seq_len + 1)
  // P_mm = weights that enter a matmul: L * (q,k,v,o,gate_up,down) + V*C for the output
  // head (counted also when tied; the embedding lookup itself is free). The second
  // term is attention: per layer and query, QK^T and PV cost 2*H*D FLOPs each per
  // visible key, a causal query sees (seq_len+1)/2 keys on average, and backward is
  // twice forward: 3 * 2 * 2 * H * D * (seq_len+1)/2. Norms, RoPE, softmax and
  // SwiGLU elementwise work are ignored (< 1%). Differential attention adds q2, k2 to
  // P_mm and runs H + G attention heads: the second term becomes 6 L (H+G) D (seq_len+1).
  double flops_per_token(int64_t seq_len) const;

  // Multi-line human-readable summary: shape, parameters by group, FLOPs/token.
  std::string summary(int64_t seq_len = 2048) const;
};

// From a Hugging Face config.json (model_type llama, mistral, qwen2 or qwen3):
// hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
// head_dim, intermediate_size, vocab_size, rope_theta, rms_norm_eps,
// initializer_range, tie_word_embeddings, attention_bias. qwen2 implies qkv_bias,
// qwen3 implies qk_norm. rope_scaling, sliding windows and activations other
// than silu are refused. `source` names the file in error messages. Validated.
ModelConfig model_config_from_hf_json(const std::string& json_text, const std::string& source);
ModelConfig load_hf_config(const std::string& path);  // reads the file, then the above

}  // namespace temper
