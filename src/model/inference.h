// InferenceEngine: KV-cached forward of a Decoder for generation. It reuses the
// decoder's parameters (compute copies, looked up by name) and runs the same op
// sequence as block_forward, but attends through per-layer caches
// [slots, max_len, KVH, D] and computes the output head only for the rows asked
// for. Caches and scratch buffers are allocated once, in the constructor; a
// decode step allocates nothing. Only Kernels calls touch device memory, so the
// same code runs on the CPU (f32 / f64 parameters) and CUDA backends. The engine
// keeps pointers to the decoder's compute tensors (the Decoder must outlive it) and
// a packed copy of each layer's q, k, v projections, refreshed by every prefill():
// after an optimizer step, Decoder::refresh_compute() is all it needs.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"
#include "model/decoder.h"

namespace temper {

class InferenceEngine {
 public:
  // max_slots sequences of up to max_len positions each. max_step_tokens bounds the
  // tokens of one forward (long prefills are chunked); 0 picks max(max_slots, 2048)
  // (prefill GEMMs of 2048 rows run near the device's matrix rate; ~70 KB of scratch
  // a token at the 1.5B shape).
  InferenceEngine(Decoder& model, Kernels& k, int max_slots, int max_len, int max_step_tokens = 0);
  ~InferenceEngine();
  InferenceEngine(const InferenceEngine&) = delete;
  InferenceEngine& operator=(const InferenceEngine&) = delete;

  int max_slots() const { return max_slots_; }
  int max_len() const { return max_len_; }
  int vocab_size() const { return V_; }
  DType logits_dtype() const { return act_; }  // the decoder's compute dtype
  // Positions of `slot` that hold valid cache entries (0 after construction).
  int slot_length(int slot) const;
  // Bytes of the KV caches and scratch buffers (device memory).
  int64_t allocated_bytes() const { return bytes_; }
  // Rows of one forward (the chunk of a prefill) for these constructor arguments.
  static int64_t chunk_rows(int max_slots, int max_step_tokens);
  // What an engine of these arguments allocates besides its KV caches ([max_slots, max_len]
  // per layer, K and V, twice with differential attention) and its [max_slots, V] logits:
  // per-chunk activations, the packed q/k/v weight copy, per-slot buffers (the memory plan's
  // "generation scratch"; allocated_bytes() is this + caches + logits).
  static int64_t scratch_bytes(const ModelConfig& cfg, int max_slots, int max_step_tokens, DType act, DType stat);

  // Runs prompts[i] (non-empty) from position 0 in slots[i] (distinct), in chunks of
  // at most max_step_tokens tokens. Returns logits [slots.size(), V] of each prompt's
  // last token (a view of an engine buffer, valid until the next call). A chunk ends
  // before a prompt that would not fit it (a longer one starts a chunk); a chunk of whole
  // prompts computes its attention with attention_forward over the prompts as packed
  // documents (the training op: flash attention) while still writing the caches,
  // a chunk holding part of a longer prompt with attention_cached (packed prefill, not
  // with differential attention; a backend that refuses the op, e.g. CUDA for f32, falls
  // back to attention_cached from then on).
  Tensor prefill(const std::vector<int>& slots, const std::vector<std::vector<int32_t>>& prompts);
  // Packed prefill on (the default) or off (every chunk through attention_cached);
  // TEMPER_PREFILL_ATTENTION=cached turns it off.
  void set_packed_prefill(bool on) { packed_prefill_ = on; }
  bool packed_prefill() const { return packed_prefill_ && packed_ok_ && !cfg_.differential(); }

  // One new token per slot (distinct) at positions[i] <= slot_length(slots[i]); the
  // slot then holds positions[i] + 1 entries. Returns logits [slots.size(), V].
  Tensor decode(const std::vector<int>& slots, const std::vector<int32_t>& tokens,
                const std::vector<int32_t>& positions);

  // Decode steps replay a recorded call sequence (a CUDA graph) per batch-size
  // bucket (8, 16, 32, ... up to max_slots) where the backend records (kernels.h
  // graph_begin) and the model has no differential attention; the rows past the
  // live ones run in slot -1 (a recording backend's cache write skips such rows and
  // its attention gives them NaN, which stays in their rows) and are discarded. On by
  // default; TEMPER_DECODE_GRAPHS=0 turns it off.
  void set_use_graphs(bool on) { use_graphs_ = on; }
  // Logits of ids >= n are -inf in every result (a model vocabulary padded past the
  // tokenizer's, so sampling never draws an id the tokenizer lacks); 0: no limit.
  void set_vocab_limit(int n);
  int vocab_limit() const { return vocab_limit_; }
  bool use_graphs() const { return use_graphs_; }
  int graphs_recorded() const { return int(graph_.size()); }

  // Copies the decoder's q, k, v weights (and biases) into the engine's packed
  // [q; k; v] matrices (one GEMM per layer instead of three). The constructor and
  // every prefill() call do it, so weights changed between generate calls are seen.
  void refresh_weights();

  // Copies the first len cached positions of src into dst (a prompt prefilled once,
  // shared by the samples of its group); dst then holds len positions.
  void copy_slot(int dst, int src, int len);

 private:
  struct LayerWeights {
    const Tensor *attn_norm, *q, *k, *v, *q_bias, *k_bias, *v_bias, *q_norm, *k_norm, *o, *mlp_norm, *gate_up,
        *down;
    // differential attention (lambda, sub-layer norm) and PolyNorm coefficients, else null
    const Tensor *lambda, *head_norm, *polynorm;
    double lambda_init;
  };
  // Runs n staged tokens (host_tok_/host_pos_/host_slot_ rows [0, n)) through the model,
  // writes the caches, and the logits of chunk rows `want` into logits rows [out_row, ...).
  // docs > 0: the rows are `docs` whole prompts from position 0 whose boundaries cu_
  // holds (cu_seqlens, the longest max_seqlen tokens): attention by attention_forward.
  void forward_chunk(int64_t n, const std::vector<int64_t>& want, int64_t out_row, int docs = 0,
                     int max_seqlen = 0);
  // The same without staging the inputs (stage() copies host_stage_ to stage_ first).
  void compute_chunk(int64_t n, const std::vector<int64_t>& want, int64_t out_row, int docs = 0,
                     int max_seqlen = 0);
  void stage();
  int decode_bucket(int64_t rows) const;
  // Final norm and output head of gathered rows [0, R) -> logits rows [0, R).
  Tensor head_logits(int64_t R);
  void check_slot(const char* what, int slot) const;

  Kernels& k_;
  ModelConfig cfg_;
  int max_slots_, max_len_, chunk_, V_;
  DType act_, stat_;
  std::vector<LayerWeights> layers_;
  const Tensor *embed_, *final_norm_, *head_;
  std::vector<Tensor> kcache_, vcache_;  // per layer [S, T, KVH, D]
  std::vector<Tensor> k2cache_, v2cache_;  // differential attention: K2 and V2 (kcache_, vcache_ hold K1, V1)
  // differential / PolyNorm scratch (model/differential_attention.h)
  Tensor proj_qkv_, q2_, k2_, v2_, attn_sig_, attn_noise_, half_, head_rstd_, act_rstd_;
  // Scratch for chunk_ tokens.
  Tensor x_, ln_, rstd_, q_pre_, q_rstd_, k_pre_, k_rstd_, q_, kk_, v_, attn_, proj_, gu_, act_buf_;
  // Packed projections (not with differential attention): per layer [(H + 2 KVH) D, C]
  // weights and [(H + 2 KVH) D] biases, refreshed from the decoder (refresh_weights),
  // and the GEMM's output [chunk, H + 2 KVH, D].
  std::vector<Tensor> qkv_w_, qkv_b_;
  Tensor qkv_;
  Tensor stage_, host_stage_;                        // i32 [3 chunk_]: tokens | positions | slots, device / host
  Tensor tok_, pos_, slot_;                          // views of stage_, i32 [chunk_] each
  Tensor host_tok_, host_pos_, host_slot_;           // views of host_stage_ (one copy per chunk)
  Tensor sel_, sel_norm_, sel_rstd_, logits_;        // [max_slots, C], [max_slots, C], [max_slots], [max_slots, V]
  // Packed prefill (not with differential attention): attention_forward's lse [chunk, H]
  // (stat dtype, not used) and cu_seqlens i32 [chunk + 1], device / host.
  Tensor lse_, cu_, host_cu_;
  bool packed_prefill_ = true, packed_ok_ = true;     // packed_ok_: false once the backend refused attention_forward
  std::vector<int> length_;                          // per slot
  int vocab_limit_ = 0;
  bool use_graphs_ = true, graphs_ok_ = true;        // graphs_ok_: false once the backend declined to record
  std::vector<std::pair<int, int>> graph_;           // (bucket rows, graph id)
  std::vector<const void*> graph_weights_;           // weight addresses the graphs recorded
  std::vector<const void*> weight_addresses() const;
  int64_t bytes_ = 0;
};

}  // namespace temper
