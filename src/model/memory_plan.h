// MemoryPlan: how many bytes one rank needs to train (and generate with) a
// decoder, item by item, before anything is allocated. Used to print a table
// at startup and by the benchmark, next to the measured peak of the backend.
//
// Items (P = ModelConfig::param_count(), tied embeddings counted once):
//   parameters (master)     P * master bytes                    / shard
//   parameters (compute)    P * compute bytes, when the backend computes in
//                           another dtype than the master (bf16 on cuda); whole
//                           on every rank, unless ZeRO-3 (shard > 1 with
//                           shard_compute): then no resident copy, see below
//   gradients               P * grad bytes                      / shard
//   AdamW moments           2 * P * 4 bytes (f32 m and v)       / shard
//   gathered layers         ZeRO-3 (shard > 1 with shard_compute): the largest
//                           transient working set of parallel/dp_shard: two
//                           blocks' compute parameters (a bound, room for a prefetch
//                           of the next that dp_shard does not do yet) + one block's full gradients, or the
//                           head group (final norm + head) with its gradients,
//                           or the embedding, whichever is largest
//   activations             Decoder::activation_bytes(tokens / sp) under the
//                           checkpointing policy: every buffer the decoder keeps
//                           for backward plus its backward scratch (the same
//                           walk as Decoder::plan_buffers)
//   logits chunk            rows * V * logits_bytes_per_elem: the output head's
//                           per-chunk logits (their gradient in place)
//   batch indices           4 i32 vectors of the micro-batch's tokens
//   KV cache                slots * length * L * 2 * KVH * D * compute bytes
//                           (* 3 with differential attention's second keys)
//   generation logits       2 * slots * V * compute bytes (engine logits + sampling)
//   gathered policy         RL / eval under ZeRO-3: the whole policy in the compute
//                           dtype, gathered for generation (train/engine)
//   reference policy        RL with a KL term: the frozen initial policy's master
//                           and gradient shards
// With generation_apart (RL, eval: the generation buffers exist only while the
// policy generates, the training buffers only while it trains) the KV cache,
// generation logits and gathered policy are generation items, the gathered
// layers, activations, logits chunk and batch indices training items, and the
// total is the items of both plus the larger of the two phases.
// Degrees: `shard` (dp_shard, ZeRO-style sharding of master weights, gradients
// and optimizer state) divides those items; `sp` (sequence parallelism) divides
// the tokens a rank holds activations for; `replicate` changes no per-rank
// item (it is shown in the header line). Items are rounded up to whole bytes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/decoder.h"  // Checkpointing

namespace temper {

struct MemoryPlanOptions {
  int64_t tokens = 0;                 // tokens of one micro-batch (before sp)
  DType master_dtype = DType::F32;    // parameters as the optimizer holds them
  DType compute_dtype = DType::BF16;  // activations and forward parameters (the backend's act dtype)
  DType stat_dtype = DType::F32;      // rstd / lse / logp (f64 when the master is f64)
  int shard = 1;                      // dp_shard degree
  int sp = 1;                         // sequence-parallel degree
  int replicate = 1;                  // dp_replicate degree (0: fill the world); per-rank bytes do not depend on it
  Checkpointing checkpointing = Checkpointing::None;  // what the forward keeps (model.activation_checkpointing)
  RecomputeParts recompute;                           // what selective recomputes (model.recompute)
  bool shard_compute = false;         // ZeRO-3: compute parameters gathered per layer (parallel/dp_shard), not resident
  // Output head chunk: rows at a time (0: the CUDA backend's rule, equal chunks of
  // at most min(4096, 2.5 GiB / (4 V)) rows) and bytes per logit (4: f32 logits,
  // the bf16 gradient written in place).
  int64_t logits_rows = 0;
  int64_t logits_bytes_per_elem = 4;
  int64_t kv_slots = 0, kv_length = 0;  // generation cache (0: none)
  bool generation_apart = false;        // generation and training buffers never coexist (RL, eval)
  bool reference_policy = false;        // a frozen copy of the policy (RL's KL term)
  // sp > 1: bytes of the sequence-parallel all-to-all buffers (parallel/ulysses scratch_bytes,
  // filled in by the caller: model/ does not see parallel/)
  int64_t sp_buffer_bytes = 0;
};

struct MemoryItem {
  enum class When { Always, Training, Generation };
  std::string name;
  int64_t bytes = 0;
  std::string note;
  When when = When::Always;
};

class MemoryPlan {
 public:
  MemoryPlan(const ModelConfig& cfg, const MemoryPlanOptions& opt);

  const std::vector<MemoryItem>& items() const { return items_; }
  int64_t bytes(const std::string& name) const;  // throws on an unknown item name
  int64_t total() const;  // Always items + the larger of the Training and the Generation items
  int64_t total(MemoryItem::When phase) const;  // the items of one kind
  // A table in GiB with each item's share; with measured >= 0, adds the measured
  // peak and the difference (fragmentation, workspaces, allocator rounding).
  std::string table(int64_t measured_bytes = -1) const;

  // The decoder's activation bytes for n tokens, by the walk of Decoder::plan_buffers.
  static int64_t activation_bytes(const ModelConfig& cfg, int64_t n_tokens, DType compute_dtype, DType stat_dtype,
                                  Checkpointing policy = Checkpointing::None, RecomputeParts parts = {});
  // One line: the mesh degrees and the policy this plan is for.
  std::string header() const { return header_; }

 private:
  std::vector<MemoryItem> items_;
  std::string header_;
};

}  // namespace temper
