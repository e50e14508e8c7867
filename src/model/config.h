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
  // Motif architecture (model/differential_attention.h), as the released models lay it out:
  // n_heads = H signal heads, n_noise_heads = G noise-control heads (differential: G = H;
  // grouped_differential: H % G == 0), n_kv_heads = KVH key heads per path (signal keys K1,
  // noise keys K2) and KVH value heads of width 2 head_dim; H % KVH == 0, G % KVH == 0.
  // Hugging Face (MotifForCausalLM): num_attention_heads = H + G, num_key_value_heads = 2 KVH.
  AttentionKind attention = AttentionKind::Standard;
  int n_noise_heads = 0;           // G; 0 with Standard
  float diff_lambda_init = -1.0f;  // < 0: the released depth schedule 0.8 - 0.6 exp(-0.3 (l - 1)), 0-based l
  float diff_norm_eps = 1e-5f;     // eps of the per-head sub-layer RMSNorm (HF attn_rms_norm_eps)
  MlpActivation mlp_activation = MlpActivation::SwiGLU;
  float polynorm_eps = 1e-6f;      // eps of PolyNorm's three normalisations (fixed in Motif's code, not in config.json)
  bool differential() const { return attention != AttentionKind::Standard; }
  double lambda_init(int layer) const;  // lambda_init of 0-based layer `layer`
  // Query heads per token as stored (H, or H + G with differential attention) and the
  // width of the attention output that enters the o projection (H D, or H 2D).
  int64_t q_heads() const { return int64_t(n_heads) + (differential() ? n_noise_heads : 0); }
  int64_t attn_out_dim() const { return int64_t(n_heads) * head_dim * (differential() ? 2 : 1); }

  // Throws temper::Error naming the first offending field.
  void validate() const;

  // Parameter counts (elements), by group; param_count() is their sum.
  int64_t embedding_params() const;        // V*C
  int64_t attention_params_per_layer() const;  // q,k,v,o weights (+ q,k,v biases, + q/k norm weights);
                                               // differential: q [(H+G)D], k, v [2 KVH D], o [C, 2HD] weights,
                                               // lambda [4,D], sub-layer norm [2D]
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
  // SwiGLU elementwise work are ignored (< 1%). Differential attention (released layout)
  // has q [(H+G)D], k, v [2 KVH D], o [C, 2 H D] in P_mm; each of the H + G heads computes
  // one D-wide score map and a 2D-wide value product (3 D per visible key instead of 2 D):
  // the second term becomes 9 L (H+G) D (seq_len+1). (temper's kernels run the two value
  // halves as two attention calls, recomputing the scores: the time is that of 4 D.)
  double flops_per_token(int64_t seq_len) const;

  // Multi-line human-readable summary: shape, parameters by group, FLOPs/token.
  std::string summary(int64_t seq_len = 2048) const;
  // One line per parameter group: its count and the product it comes from (temper plan).
  std::string param_terms() const;
};

// From a Hugging Face config.json (model_type llama, mistral, qwen2, qwen3 or motif):
// hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
// head_dim, intermediate_size, vocab_size, rope_theta, rms_norm_eps,
// initializer_range, tie_word_embeddings, attention_bias. qwen2 implies qkv_bias,
// qwen3 implies qk_norm. motif (MotifForCausalLM): grouped differential attention
// with num_noise_heads (absent: differential, G = num_attention_heads / 2),
// attn_rms_norm_eps, hidden_act poly_norm; use_bias and k_ratio != 1 are refused.
// rope_scaling, sliding windows and other activations are refused. `source` names
// the file in error messages. Validated.
ModelConfig model_config_from_hf_json(const std::string& json_text, const std::string& source);
ModelConfig load_hf_config(const std::string& path);  // reads the file, then the above

}  // namespace temper
