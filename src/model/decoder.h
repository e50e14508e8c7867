// Decoder: a Llama / Qwen2 / Qwen3-style decoder-only transformer built only on
// Kernels calls. Owns its parameters (master copy + compute view + gradient) and
// activation buffers (kept from forward for backward, reused across steps).
//
// Parameter names (HF-like; model/hf_checkpoint maps them, splitting gate_up):
//   embed                               [V, C]   (model.embed_tokens.weight)
//   layers.{i}.attn_norm.weight         [C]      (input_layernorm)
//   layers.{i}.attn.{q,k,v}.weight      [H*D|KVH*D, C]; .bias when qkv_bias
//   layers.{i}.attn.{q,k}_norm.weight   [D]      when qk_norm
//   layers.{i}.attn.o.weight            [C, H*D]
//   layers.{i}.mlp_norm.weight          [C]      (post_attention_layernorm)
//   layers.{i}.mlp.gate_up.weight       [2F, C]  rows [0,F) gate_proj, [F,2F) up_proj
//   layers.{i}.mlp.down.weight          [C, F]
//   final_norm.weight                   [C]      (model.norm)
//   lm_head.weight                      [V, C]   only when embeddings are untied
// Motif architecture (model/differential_attention.h, model/polynorm.h), the released layout:
//   layers.{i}.attn.q.weight            [(H+G)*D, C]  signal and noise-control queries (q_proj)
//   layers.{i}.attn.{k,v}.weight        [2*KVH*D, C]  (K1, K2) and (V1, V2) head pairs (k_proj, v_proj)
//   layers.{i}.attn.o.weight            [C, 2*H*D]    (o_proj)
//   layers.{i}.attn.lambda              [4, D]   rows lq1, lk1, lq2, lk2 (lambda_q1 .. lambda_k2)
//   layers.{i}.attn.head_norm.weight    [2D]     per-head sub-layer RMSNorm of the combined output (subln)
//   layers.{i}.mlp.polynorm             [4]      w0, w1, w2, b (mlp.act_fn.weight, .bias)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/layers.h"

namespace temper {

// What the forward keeps for the backward (deck: model.activation_checkpointing).
//  none:      every block activation is kept (fastest, most memory).
//  selective: the parts named by RecomputeParts (deck: model.recompute) are not kept
//             per layer but recomputed in backward into one shared area:
//             mlp       the gate|up projection and SwiGLU output ([N, 3F], the
//                       largest part), from the kept MLP-norm output (one extra
//                       gate|up GEMM per layer);
//             attention the attention core's output and log-sum-exp ([N, H, D] +
//                       [N, H]), from the kept post-RoPE q, k, v (one extra
//                       attention forward per layer, as flash attention does).
//  full:      only the residual stream entering each block is kept; backward
//             recomputes the whole block forward into one shared work area.
enum class Checkpointing { None, Selective, Full };
Checkpointing checkpointing_from_name(const std::string& name);  // none | selective | full
const char* checkpointing_name(Checkpointing c);

struct RecomputeParts {
  bool attention = false, mlp = true;
};
// From names like {"attention", "mlp"} (at least one; each of attention, mlp).
RecomputeParts recompute_parts_from_names(const std::vector<std::string>& names);
std::string recompute_parts_name(RecomputeParts p);  // "attention,mlp"

// Optional per-layer parameter hooks (parallel/dp_shard uses them: all-gather a
// layer's sharded parameters just before it runs, reduce-scatter its gradients
// right after its backward). Layer ids: 0..L-1 are the blocks, kEmbed the input
// embedding, kHead the final norm + output head (+ the embedding again when tied).
// Forward: kEmbed, blocks 0..L-1, kHead (after_forward(kHead) once the head ran,
// in forward and in logits_at). Backward: kHead, blocks L-1..0, kEmbed.
class LayerParamHooks {
 public:
  static constexpr int kEmbed = -1, kHead = -2;
  virtual ~LayerParamHooks() = default;
  virtual void before_forward(int layer) = 0;
  virtual void after_forward(int layer) = 0;
  virtual void before_backward(int layer) = 0;
  virtual void after_backward(int layer) = 0;
};

class Decoder {
 public:
  // param_dtype: F32 (training: the master copy) or F64 (tests on the CPU backend:
  // then activations, statistics and gradients are f64 too).
  Decoder(const ModelConfig& cfg, Kernels& k, DType param_dtype);
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  const ModelConfig& config() const { return cfg_; }
  DType param_dtype() const { return param_dtype_; }
  DType compute_dtype() const { return compute_dtype_; }  // activations and compute copies
  DType stat_dtype() const { return stat_dtype_; }  // logp / dlogp / rstd / lse

  // normal(0, init_std) for matrices and the embedding, o and down projections
  // scaled by 1/sqrt(2 n_layers), norm weights 1, biases 0. Drawn on the backend:
  // tensor `index` is stream `index` of the counter-based generator (Kernels::fill_normal),
  // so the values are the same bits on every backend and mesh.
  void init_random(uint64_t seed);

  // Name, master value, gradient, decay flag, compute view. Do not resize the vector.
  std::vector<NamedParam>& params() { return params_; }
  const std::vector<NamedParam>& params() const { return params_; }
  NamedParam& param(const std::string& name);  // throws on an unknown name
  // Copies master values into the compute copies (after an optimizer step or a
  // checkpoint load); a no-op where they are the same tensors.
  void refresh_compute();

  // Forward over the batch, keeping activations for backward; logp[N] (stat_dtype,
  // allocated here when undefined or of the wrong size) gets log p(target) per token,
  // 0 where target < 0.
  void forward(const Batch& b, Tensor& logp);
  // Backward of L = sum_n dlogp[n] * logp[n]; call after forward with the same batch.
  // Gradients accumulate; activations stay valid, so backward may be repeated.
  void backward(const Batch& b, const Tensor& dlogp);
  // forward + backward in one pass when dlogp is known before the forward (SFT:
  // it depends only on the targets). The output head then runs once, computing
  // logp and its gradients in the same chunked pass (forward's separate head pass
  // is skipped). Same logp, gradients and kept activations as forward + backward.
  void forward_backward(const Batch& b, const Tensor& dlogp, Tensor& logp);
  // logits [rows, V] (compute_dtype; allocated when undefined or mis-shaped) of the
  // given token indices of the batch (decoding without a KV cache). Overwrites the
  // kept activations: run forward again before backward.
  void logits_at(const Batch& b, const std::vector<int64_t>& token_index, Tensor& logits);
  void zero_grad();  // skips gradients a LayerParamHooks has released
  // nullptr (default): parameters stay resident. The hooks outlive their use here.
  // Installing hooks also drops the Decoder's hold on the one gradient buffer.
  void set_param_hooks(LayerParamHooks* h);
  LayerParamHooks* param_hooks() const { return hooks_; }

  // QK-clip (train/qk_clip.h): while on, forward records per layer the largest
  // pre-softmax logit of each query head (Kernels::attention_max_logit on the
  // post-RoPE q, k; through Batch::attention under sequence parallelism, where a
  // rank fills only the heads it holds: reduce (max) over the SP group),
  // max-accumulated until zero_grad() resets it to -inf. Differential attention:
  // H signal heads (Q1 . K1), then G noise-control heads (Q2 . K2).
  void set_record_max_logits(bool on);
  const std::vector<Tensor>& max_logits() const { return max_logits_; }  // L x stat_dtype[q_heads()]; empty when off

  // Changes what forward keeps (frees the activation buffers; the next forward
  // reallocates). Gradients are identical under every policy.
  void set_checkpointing(Checkpointing c, RecomputeParts parts = {});
  Checkpointing checkpointing() const { return ckpt_; }
  RecomputeParts recompute_parts() const { return parts_; }

  // Bytes of activation buffers (kept + backward scratch) for n_tokens tokens; equals
  // allocated_activation_bytes() after a step with that many tokens.
  int64_t activation_bytes(int64_t n_tokens) const;
  int64_t allocated_activation_bytes() const { return allocated_bytes_; }
  int64_t capacity_tokens() const { return capacity_; }

 private:
  struct Buffers {
    std::vector<Tensor> resid;       // L+1 residual streams [N, C]; resid[0] = embeddings
    std::vector<BlockActs> blocks;   // L
    Tensor lnf, rstdf;               // final norm [N, C], [N]
    BlockScratch scratch;
    Tensor dres;                     // [N, C] running residual gradient
    Tensor logp_tmp;                 // [N] logp rewritten by the head's backward
    BlockActs work;                  // full: the one block work area (x_in/x_out unset)
  };
  // Walks every activation buffer for n tokens: allocates when `allocate`, returns bytes.
  int64_t plan_buffers(int64_t n, Buffers& buf, bool allocate) const;
  void ensure_capacity(int64_t n);
  void check_batch(const Batch& b) const;
  void run_forward(const Batch& b);  // embedding, blocks, final norm into buffers
  void backward_from_head(const Batch& b, const Tensor& dlogp, Tensor& logp);  // logp written by the head
  NamedParam& add_param(const std::string& name, const Shape& shape, bool decay);
  BlockActs block_view(int l, int64_t n) const;

  ModelConfig cfg_;
  Kernels& k_;
  DType param_dtype_, compute_dtype_, grad_dtype_, stat_dtype_;
  std::vector<NamedParam> params_;
  Tensor grad_flat_;  // every gradient (64-element aligned views), while no hooks are set
  NamedParam* embed_ = nullptr;
  NamedParam* final_norm_ = nullptr;
  NamedParam* head_ = nullptr;  // == embed_ when tied
  std::vector<BlockWeights> blocks_;
  Buffers buf_;
  int64_t capacity_ = 0;
  int64_t allocated_bytes_ = 0;
  int64_t acts_for_n_ = -1;
  LayerParamHooks* hooks_ = nullptr;
  RecomputeParts parts_;  // what selective recomputes
  std::vector<Tensor> max_logits_;  // QK-clip records (set_record_max_logits)
  void reset_max_logits();
  void record_max_logits(int layer, const BlockActs& a, const Batch& b);
  Checkpointing ckpt_ = Checkpointing::None;  // token count of the batch whose activations are kept (-1: none)
};

}  // namespace temper
