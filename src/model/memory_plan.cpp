// MemoryPlan: the per-rank memory model (see the header).
#include "model/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "model/inference.h"

namespace temper {

namespace {

int64_t div_up(int64_t a, int64_t b) { return (a + b - 1) / b; }

double gib(int64_t b) { return double(b) / double(int64_t(1) << 30); }

}  // namespace

int64_t MemoryPlan::activation_bytes(const ModelConfig& c, int64_t n, DType compute_dtype, DType stat_dtype,
                                     Checkpointing policy, RecomputeParts parts) {
  TEMPER_CHECK(n >= 0, "MemoryPlan: negative token count ", n);
  const int64_t a = int64_t(dtype_size(compute_dtype)), s = int64_t(dtype_size(stat_dtype));
  const int64_t C = c.d_model, H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim, F = c.ffn_dim, L = c.n_layers;
  const int64_t G = c.n_noise_heads, Dv = c.differential() ? 2 * D : D, HG = std::max(H, G);
  // Per token, in the order of Decoder::plan_buffers.
  int64_t block = C * a + s;                                            // ln1, rstd1
  if (c.qk_norm) block += H * D * a + H * s + KVH * D * a + KVH * s;    // q_pre, q_rstd, k_pre, k_rstd
  block += H * D * a + 2 * KVH * D * a;                                 // q, k, v
  const int64_t attn = H * Dv * a + H * s;                              // attn, lse
  block += C * a + C * a + s;                                           // x_mid, ln2, rstd2
  if (c.differential())  // q2, k2, v2, attn_sig, attn_noise, lse2, head_rstd (model/differential_attention.h)
    block += G * D * a + 2 * KVH * D * a + H * Dv * a + G * Dv * a + G * s + H * s;
  int64_t mlp = 2 * F * a + F * a;                                      // gu, act
  if (c.mlp_activation == MlpActivation::PolyNorm) mlp += 3 * s;        // PolyNorm rstd
  int64_t per_token = (L + 1) * C * a;                                  // residual streams
  if (c.differential()) per_token += (c.q_heads() + 4 * KVH) * D * a + HG * D * a;  // shared q|k|v, one half
  switch (policy) {
    case Checkpointing::None: per_token += L * (block + attn + mlp); break;
    case Checkpointing::Selective:  // the recomputed parts: one shared area instead of one per layer
      per_token += L * block + (parts.attention ? attn : L * attn) + (parts.mlp ? mlp : L * mlp);
      break;
    case Checkpointing::Full: per_token += block + attn + mlp; break;   // one block work area
  }
  per_token += C * a + s;                                               // final norm out, rstd
  per_token += C * a + H * D * a + 2 * KVH * D * a + H * Dv * a;        // scratch: dln, dq, dk, dv, dattn
  if (c.qk_norm) per_token += KVH * D * a;                              // dk_pre
  if (c.differential())  // da_sig, da_noise, dq2, dk2, dv2, attention-half temporaries
    per_token += H * Dv * a + G * Dv * a + G * D * a + 2 * KVH * D * a + 2 * HG * D * a + 2 * KVH * D * a;
  per_token += 2 * F * a + F * a + C * a + s;                           // dgu, dact, dres, logp_tmp
  return n * per_token;
}

MemoryPlan::MemoryPlan(const ModelConfig& cfg, const MemoryPlanOptions& o) {
  cfg.validate();
  TEMPER_CHECK(o.shard >= 1 && o.sp >= 1 && o.replicate >= 0,
               "MemoryPlan: shard and sp degrees must be >= 1 (replicate >= 0), got shard ", o.shard, ", sp ", o.sp,
               ", replicate ", o.replicate);
  header_ = cat("per rank: sp ", o.sp, " x dp_shard ", o.shard, " x dp_replicate ",
                o.replicate == 0 ? std::string("fill") : std::to_string(o.replicate), ", ", o.tokens,
                " tokens per micro-batch, activation checkpointing ", checkpointing_name(o.checkpointing),
                o.shard > 1 && o.shard_compute ? ", ZeRO-3 (parameters gathered per layer)" : "");
  TEMPER_CHECK(o.tokens >= 0 && o.kv_slots >= 0 && o.kv_length >= 0 && o.logits_rows >= 0,
               "MemoryPlan: token, cache and chunk sizes must be >= 0");
  const int64_t P = cfg.param_count();
  const int64_t mb = int64_t(dtype_size(o.master_dtype)), cb = int64_t(dtype_size(o.compute_dtype));
  const std::string shard_note = o.shard > 1 ? cat(" / shard ", o.shard) : std::string();

  using When = MemoryItem::When;
  const When train = o.generation_apart ? When::Training : When::Always;
  const When gen = o.generation_apart ? When::Generation : When::Always;
  items_.push_back({"parameters (master)", div_up(P * mb, o.shard), cat(P, " x ", dtype_name(o.master_dtype), shard_note)});
  const bool zero3 = o.shard > 1 && o.shard_compute;  // no resident compute copy: gathered per layer
  if (o.compute_dtype != o.master_dtype && !zero3)
    items_.push_back({"parameters (compute copy)", P * cb, cat(P, " x ", dtype_name(o.compute_dtype))});
  items_.push_back({"gradients", div_up(P * mb, o.shard), cat(P, " x ", dtype_name(o.master_dtype), shard_note)});
  items_.push_back({"AdamW moments", div_up(2 * P * mb, o.shard), cat("2 x ", P, " x ", dtype_name(o.master_dtype), shard_note)});
  if (o.reference_policy)
    items_.push_back({"reference policy", 2 * div_up(P * mb, o.shard),
                      cat("frozen initial policy: master + gradient shards, 2 x ", P, " x ", dtype_name(o.master_dtype),
                          shard_note)});
  if (zero3) {  // parallel/dp_shard's transient full tensors (compute copies converted from the shards)
    const int64_t layer = cfg.attention_params_per_layer() + cfg.mlp_params_per_layer() + 2 * int64_t(cfg.d_model);
    const int64_t head = int64_t(cfg.d_model) + (cfg.tie_embeddings ? cfg.embedding_params() : cfg.head_params());
    const int64_t blocks = 2 * layer * cb + layer * mb, head_set = head * (cb + mb),
                  embed_set = cfg.embedding_params() * std::max(cb, mb);
    const int64_t peak = std::max({blocks, head_set, embed_set});
    items_.push_back({"gathered layers", peak,
                      peak == blocks ? cat("2 blocks x ", layer, " x ", dtype_name(o.compute_dtype), " + 1 block's grads")
                      : peak == head_set ? cat("head ", head, " x (", dtype_name(o.compute_dtype), " + grads)")
                                         : cat("embedding ", cfg.embedding_params(), " (gathered or its grads)"),
                      train});
  }

  const int64_t n = div_up(o.tokens, o.sp);
  const std::string sp_note = o.sp > 1 ? cat(" (", o.tokens, " / sp ", o.sp, ")") : std::string();
  const std::string policy =
      o.checkpointing == Checkpointing::Selective
          ? cat("selective (", recompute_parts_name(o.recompute), ")") : std::string(checkpointing_name(o.checkpointing));
  items_.push_back({"activations", activation_bytes(cfg, n, o.compute_dtype, o.stat_dtype, o.checkpointing, o.recompute),
                    cat(n, " tokens", sp_note, ", checkpointing ", policy, ": kept for backward + scratch"), train});
  if (o.sp > 1)
    items_.push_back({"Ulysses buffers", o.sp_buffer_bytes,
                      cat("all-to-all staging and this rank's heads over ", n * o.sp, " tokens (parallel/ulysses)"),
                      train});
  const int64_t V = cfg.vocab_size;
  int64_t rows = o.logits_rows;
  if (rows == 0) {  // CudaKernels::lm_head_chunk_rows: equal chunks under min(4096, 2.5 GiB / (4 V)) rows
    const int64_t cap = std::min<int64_t>(4096, std::max<int64_t>(1, (int64_t(5) << 29) / (4 * std::max<int64_t>(V, 1))));
    const int64_t chunks = div_up(std::max<int64_t>(n, 1), cap);
    rows = chunks <= 1 ? n : std::min(cap, div_up(div_up(n, chunks), 64) * 64);
  }
  rows = std::min(rows, n);
  items_.push_back({"logits chunk", rows * V * o.logits_bytes_per_elem,
                    cat(rows, " rows x ", V, " x ", o.logits_bytes_per_elem, " B"), train});
  items_.push_back({"batch indices", n * 4 * 4, "tokens, targets, positions, logp (4 B each)", train});
  if (o.kv_slots > 0 && o.kv_length > 0) {
    const int64_t caches = cfg.differential() ? 4 : 2;  // K, V (K1, K2, V1, V2 with differential attention)
    const int64_t kv = o.kv_slots * o.kv_length * cfg.n_layers * caches * cfg.n_kv_heads * cfg.head_dim * cb;
    items_.push_back({"KV cache", kv, cat(o.kv_slots, " slots x ", o.kv_length, " positions x ", cfg.n_layers,
                                          " layers x ", caches, " x ", cfg.n_kv_heads, " x ", cfg.head_dim, " x ",
                                          dtype_name(o.compute_dtype)), gen});
    items_.push_back({"generation scratch",
                      InferenceEngine::scratch_bytes(cfg, int(o.kv_slots), 0, o.compute_dtype, o.stat_dtype),
                      cat("prefill chunk of ", InferenceEngine::chunk_rows(int(o.kv_slots), 0),
                          " tokens, packed q/k/v weights, per-slot rows (model/inference)"),
                      gen});
    if (o.generation_apart) {
      items_.push_back({"generation logits", 2 * o.kv_slots * V * cb,
                        cat("2 x ", o.kv_slots, " slots x ", V, " x ", dtype_name(o.compute_dtype)), gen});
      if (zero3)
        items_.push_back({"gathered policy", P * cb,
                          cat(P, " x ", dtype_name(o.compute_dtype), ": whole weights for generation, from the shards"),
                          gen});
    }
  } else {
    items_.push_back({"KV cache", 0, "none (no generation in this phase)"});
  }
}

int64_t MemoryPlan::bytes(const std::string& name) const {
  for (const auto& it : items_)
    if (it.name == name) return it.bytes;
  fail("MemoryPlan: no item named '", name, "'");
}

int64_t MemoryPlan::total(MemoryItem::When phase) const {
  int64_t t = 0;
  for (const auto& it : items_)
    if (it.when == phase) t += it.bytes;
  return t;
}

int64_t MemoryPlan::total() const {
  using When = MemoryItem::When;
  return total(When::Always) + std::max(total(When::Training), total(When::Generation));
}

std::string MemoryPlan::table(int64_t measured) const {
  std::ostringstream os;
  char line[256];
  const int64_t tot = total();
  os << header_ << "\n";
  std::snprintf(line, sizeof line, "%-26s %10s %6s  %s\n", "memory item", "GiB", "%", "detail");
  os << line;
  using When = MemoryItem::When;
  const bool phases = total(When::Training) > 0 || total(When::Generation) > 0;
  for (const auto& it : items_) {
    const char* tag = it.when == When::Training ? "[training] " : it.when == When::Generation ? "[generation] " : "";
    std::snprintf(line, sizeof line, "%-26s %10.3f %5.1f%%  %s%s\n", it.name.c_str(), gib(it.bytes),
                  tot > 0 ? 100.0 * double(it.bytes) / double(tot) : 0.0, tag, it.note.c_str());
    os << line;
  }
  if (phases) {  // generation and training buffers never coexist
    std::snprintf(line, sizeof line, "%-26s %10.3f  while generating; %.3f GiB while training\n", "peak of the phases",
                  gib(total(When::Always) + total(When::Generation)), gib(total(When::Always) + total(When::Training)));
    os << line;
  }
  std::snprintf(line, sizeof line, "%-26s %10.3f\n", "total (planned)", gib(tot));
  os << line;
  if (measured >= 0) {
    std::snprintf(line, sizeof line, "%-26s %10.3f  (%+.3f GiB vs plan: allocator rounding, workspaces)\n",
                  "measured peak", gib(measured), gib(measured - tot));
    os << line;
  }
  return os.str();
}

}  // namespace temper
