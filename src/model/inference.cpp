// InferenceEngine: KV-cached forward (prefill in chunks, one-token decode steps,
// slot copies) on the Decoder's weights. Per block, for the chunk's n tokens:
//   ln = rmsnorm(x); q, k, v = ln W^T (+b); [per-head rmsnorm of q, k]; rope(q, k)
//   cache[slot, pos] = k, v; attn = attention_cached(q); x += attn W_o^T
//   (a prefill chunk of whole prompts: attn = attention_forward(q, k, v) over the
//   prompts as packed documents, the training op, instead of reading the cache back)
//   ln = rmsnorm(x); x += down(swiglu(ln W_gu^T))
// (rope and the cache write are one call, rope_cache_write, and each residual add
// runs with the norm after it, add_rmsnorm_forward: backends may fuse them)
// then the final norm and output head on the requested rows only. x += y gives
// the same values as the decoder's y + x (float addition commutes). Differential
// attention (model/differential_attention.h) caches K1, K2, V1, V2 and combines the
// cached attentions as in training; PolyNorm replaces SwiGLU.
#include "model/inference.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/error.h"
#include "model/differential_attention.h"

namespace temper {

namespace {
const Tensor* compute_of(Decoder& m, const std::string& name) { return &m.param(name).compute; }
}  // namespace

InferenceEngine::InferenceEngine(Decoder& model, Kernels& k, int max_slots, int max_len, int max_step_tokens)
    : k_(k), cfg_(model.config()) {
  TEMPER_CHECK(max_slots > 0, "InferenceEngine: max_slots must be positive, got ", max_slots);
  TEMPER_CHECK(max_len > 0, "InferenceEngine: max_len must be positive, got ", max_len);
  TEMPER_CHECK(max_step_tokens >= 0, "InferenceEngine: max_step_tokens must be >= 0, got ", max_step_tokens);
  max_slots_ = max_slots;
  max_len_ = max_len;
  // Graph decode is on (tested and measured on an H200, validation/rollout/README.md)
  // unless TEMPER_DECODE_GRAPHS=0; set_use_graphs overrides.
  const char* graphs_env = std::getenv("TEMPER_DECODE_GRAPHS");
  use_graphs_ = !(graphs_env && std::string(graphs_env) == "0");
  const char* prefill_env = std::getenv("TEMPER_PREFILL_ATTENTION");  // "cached": no packed prefill
  packed_prefill_ = !(prefill_env && std::string(prefill_env) == "cached");
  chunk_ = int(chunk_rows(max_slots, max_step_tokens));
  V_ = cfg_.vocab_size;
  act_ = model.compute_dtype();
  stat_ = model.stat_dtype();

  const int L = cfg_.n_layers;
  for (int l = 0; l < L; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerWeights w{};
    w.attn_norm = compute_of(model, p + "attn_norm.weight");
    w.q = compute_of(model, p + "attn.q.weight");
    w.k = compute_of(model, p + "attn.k.weight");
    w.v = compute_of(model, p + "attn.v.weight");
    if (cfg_.qkv_bias) {
      w.q_bias = compute_of(model, p + "attn.q.bias");
      w.k_bias = compute_of(model, p + "attn.k.bias");
      w.v_bias = compute_of(model, p + "attn.v.bias");
    }
    if (cfg_.qk_norm) {
      w.q_norm = compute_of(model, p + "attn.q_norm.weight");
      w.k_norm = compute_of(model, p + "attn.k_norm.weight");
    }
    w.o = compute_of(model, p + "attn.o.weight");
    w.mlp_norm = compute_of(model, p + "mlp_norm.weight");
    w.gate_up = compute_of(model, p + "mlp.gate_up.weight");
    w.down = compute_of(model, p + "mlp.down.weight");
    if (cfg_.differential()) {
      w.lambda = compute_of(model, p + "attn.lambda");
      w.head_norm = compute_of(model, p + "attn.head_norm.weight");
      w.lambda_init = cfg_.lambda_init(l);
    }
    if (cfg_.mlp_activation == MlpActivation::PolyNorm) w.polynorm = compute_of(model, p + "mlp.polynorm");
    layers_.push_back(w);
  }
  embed_ = compute_of(model, "embed");
  final_norm_ = compute_of(model, "final_norm.weight");
  head_ = compute_of(model, cfg_.tie_embeddings ? "embed" : "lm_head.weight");

  const int64_t S = max_slots_, T = max_len_, N = chunk_, C = cfg_.d_model, H = cfg_.n_heads,
                KVH = cfg_.n_kv_heads, D = cfg_.head_dim, F = cfg_.ffn_dim;
  auto alloc = [&](const Shape& s, DType dt) {
    bytes_ += shape_numel(s) * int64_t(dtype_size(dt));
    return k_.alloc(s, dt);
  };
  for (int l = 0; l < L; ++l) {
    kcache_.push_back(alloc({S, T, KVH, D}, act_));
    vcache_.push_back(alloc({S, T, KVH, D}, act_));
    if (cfg_.differential()) {
      k2cache_.push_back(alloc({S, T, KVH, D}, act_));
      v2cache_.push_back(alloc({S, T, KVH, D}, act_));
    }
  }
  if (cfg_.differential()) {
    const int64_t G = cfg_.n_noise_heads;
    proj_qkv_ = alloc({N, (cfg_.q_heads() + 4 * KVH) * D}, act_);
    q2_ = alloc({N, G, D}, act_);
    k2_ = alloc({N, KVH, D}, act_);
    v2_ = alloc({N, KVH, D}, act_);
    attn_sig_ = alloc({N, H, 2 * D}, act_);
    attn_noise_ = alloc({N, G, 2 * D}, act_);
    half_ = alloc({N, std::max(H, G), D}, act_);
    head_rstd_ = alloc({N, H}, stat_);
  }
  if (cfg_.mlp_activation == MlpActivation::PolyNorm) act_rstd_ = alloc({N, 3}, stat_);
  x_ = alloc({N, C}, act_);
  ln_ = alloc({N, C}, act_);
  rstd_ = alloc({N}, stat_);
  if (cfg_.qk_norm) {
    q_pre_ = alloc({N, H, D}, act_);
    q_rstd_ = alloc({N, H}, stat_);
    k_pre_ = alloc({N, KVH, D}, act_);
    k_rstd_ = alloc({N, KVH}, stat_);
  }
  if (!cfg_.differential()) {
    const int64_t P = (H + 2 * KVH) * D;
    for (int l = 0; l < L; ++l) {
      qkv_w_.push_back(alloc({P, C}, act_));
      if (cfg_.qkv_bias) qkv_b_.push_back(alloc({P}, act_));
    }
    qkv_ = alloc({N, H + 2 * KVH, D}, act_);
    lse_ = alloc({N, H}, stat_);
    cu_ = alloc({N + 1}, DType::I32);
    host_cu_ = Tensor::empty({N + 1}, DType::I32);
    refresh_weights();
  }
  q_ = alloc({N, H, D}, act_);
  kk_ = alloc({N, KVH, D}, act_);
  v_ = alloc({N, KVH, D}, act_);
  attn_ = alloc({N, H, cfg_.attn_out_dim() / H}, act_);
  proj_ = alloc({N, C}, act_);
  gu_ = alloc({N, 2 * F}, act_);
  act_buf_ = alloc({N, F}, act_);
  stage_ = alloc({3 * N}, DType::I32);
  host_stage_ = Tensor::empty({3 * N}, DType::I32);
  std::fill_n(host_stage_.data<int32_t>(), 3 * N, 0);
  tok_ = stage_.rows(0, N);
  pos_ = stage_.rows(N, 2 * N);
  slot_ = stage_.rows(2 * N, 3 * N);
  host_tok_ = host_stage_.rows(0, N);
  host_pos_ = host_stage_.rows(N, 2 * N);
  host_slot_ = host_stage_.rows(2 * N, 3 * N);
  sel_ = alloc({S, C}, act_);
  sel_norm_ = alloc({S, C}, act_);
  sel_rstd_ = alloc({S}, stat_);
  logits_ = alloc({S, int64_t(V_)}, act_);
  length_.assign(size_t(S), 0);
}

int64_t InferenceEngine::chunk_rows(int max_slots, int max_step_tokens) {
  return max_step_tokens > 0 ? std::max(max_step_tokens, max_slots) : std::max(max_slots, 2048);
}

int64_t InferenceEngine::scratch_bytes(const ModelConfig& cfg, int max_slots, int max_step_tokens, DType act,
                                       DType stat) {
  // Mirrors the constructor's allocations (test_generation checks the two agree).
  const int64_t S = max_slots, N = chunk_rows(max_slots, max_step_tokens), C = cfg.d_model, H = cfg.n_heads,
                KVH = cfg.n_kv_heads, D = cfg.head_dim, F = cfg.ffn_dim, L = cfg.n_layers;
  const int64_t a = int64_t(dtype_size(act)), st = int64_t(dtype_size(stat));
  int64_t b = 0;
  if (cfg.differential()) {
    const int64_t G = cfg.n_noise_heads;
    b += N * (cfg.q_heads() + 4 * KVH) * D * a + N * G * D * a + 2 * N * KVH * D * a + N * H * 2 * D * a +
         N * G * 2 * D * a + N * std::max(H, G) * D * a + N * H * st;
  }
  if (cfg.mlp_activation == MlpActivation::PolyNorm) b += N * 3 * st;
  b += 2 * N * C * a + N * st;  // x, ln, rstd
  if (cfg.qk_norm) b += N * H * D * a + N * H * st + N * KVH * D * a + N * KVH * st;
  if (!cfg.differential()) {
    const int64_t P = (H + 2 * KVH) * D;
    b += L * (P * C * a + (cfg.qkv_bias ? P * a : 0)) + N * (H + 2 * KVH) * D * a;  // packed weights, qkv
    b += N * H * st + (N + 1) * int64_t(dtype_size(DType::I32));                      // packed prefill: lse, cu
  }
  b += N * H * D * a + 2 * N * KVH * D * a + N * cfg.attn_out_dim() * a;  // q, k, v, attn
  b += N * C * a + N * 2 * F * a + N * F * a;                             // proj, gate/up, act
  b += 3 * N * int64_t(dtype_size(DType::I32));                           // token / position / slot indices
  b += 2 * S * C * a + S * st;                                            // last-token rows, their norm
  return b;
}

InferenceEngine::~InferenceEngine() {
  for (const auto& [rows, id] : graph_) k_.graph_release(id);
}

int InferenceEngine::slot_length(int slot) const {
  check_slot("slot_length", slot);
  return length_[size_t(slot)];
}

void InferenceEngine::check_slot(const char* what, int slot) const {
  TEMPER_CHECK(slot >= 0 && slot < max_slots_, "InferenceEngine::", what, ": slot ", slot,
               " is outside the engine's ", max_slots_, " slots");
}

void InferenceEngine::stage() { k_.copy(stage_, host_stage_); }

void InferenceEngine::forward_chunk(int64_t n, const std::vector<int64_t>& want, int64_t out_row, int docs,
                                    int max_seqlen) {
  stage();
  compute_chunk(n, want, out_row, docs, max_seqlen);
}

void InferenceEngine::compute_chunk(int64_t n, const std::vector<int64_t>& want, int64_t out_row, int docs,
                                    int max_seqlen) {
  const int64_t H = cfg_.n_heads, KVH = cfg_.n_kv_heads, D = cfg_.head_dim;
  Tensor tok = tok_.rows(0, n), pos = pos_.rows(0, n), slot = slot_.rows(0, n);
  Tensor x = x_.rows(0, n), ln = ln_.rows(0, n), rstd = rstd_.rows(0, n), proj = proj_.rows(0, n);
  Tensor q = q_.rows(0, n), kk = kk_.rows(0, n), v = v_.rows(0, n), attn = attn_.rows(0, n);
  Tensor gu = gu_.rows(0, n), act = act_buf_.rows(0, n);
  k_.embedding_forward(x, tok, *embed_);
  k_.rmsnorm_forward(ln, rstd, x, *layers_[0].attn_norm, cfg_.norm_eps);
  for (size_t l = 0; l < layers_.size(); ++l) {  // ln holds attn_norm(x) here
    const LayerWeights& w = layers_[l];
    if (cfg_.differential()) {  // model/differential_attention.h, against the caches
      const int64_t QH = cfg_.q_heads(), KH = 2 * KVH;
      Tensor flat = proj_qkv_.reshape({proj_qkv_.numel()});
      Tensor qf = flat.rows(0, n * QH * D).reshape({n, QH, D});
      Tensor kf = flat.rows(n * QH * D, n * (QH + KH) * D).reshape({n, KH, D});
      Tensor vf = flat.rows(n * (QH + KH) * D, n * (QH + 2 * KH) * D).reshape({n, KH, D});
      Tensor ql = qf.reshape({n, QH * D}), kl = kf.reshape({n, KH * D}), vl = vf.reshape({n, KH * D});
      k_.matmul_forward(ql, ln, *w.q, nullptr);
      k_.matmul_forward(kl, ln, *w.k, nullptr);
      k_.matmul_forward(vl, ln, *w.v, nullptr);
      Tensor q2 = q2_.rows(0, n), k2 = k2_.rows(0, n), v2 = v2_.rows(0, n);
      diff_split_heads(k_, cfg_, qf, kf, vf, q, q2, kk, k2, v, v2);
      for (Tensor* t : {&q, &q2, &kk, &k2}) k_.rope_forward(*t, pos, cfg_.rope_theta);
      k_.kv_cache_write(kcache_[l], vcache_[l], kk, v, slot, pos);
      k_.kv_cache_write(k2cache_[l], v2cache_[l], k2, v2, slot, pos);
      Tensor sig = attn_sig_.rows(0, n), noise = attn_noise_.rows(0, n), half = half_, hr = head_rstd_.rows(0, n);
      const DiffCoreParams p{w.lambda, w.head_norm, nullptr, nullptr, w.lambda_init, cfg_.diff_norm_eps};
      diff_attention_cached(k_, attn, hr, sig, noise, half, q, q2, kcache_[l], k2cache_[l], vcache_[l], v2cache_[l],
                            slot, pos, p);
    } else {
      Tensor qkv = qkv_.rows(0, n), qkv_lin = qkv.reshape({n, (H + 2 * KVH) * D});
      k_.matmul_forward(qkv_lin, ln, qkv_w_[l], cfg_.qkv_bias ? &qkv_b_[l] : nullptr);
      const bool packed = docs > 0 && packed_ok_;  // attention_forward needs k, v [n, KVH, D] after RoPE
      if (cfg_.qk_norm) {
        Tensor qp = q_pre_.rows(0, n), kp = k_pre_.rows(0, n);
        k_.copy_heads(qp, 0, qkv, 0, H, false);
        k_.copy_heads(kp, 0, qkv, H, KVH, false);
        k_.copy_heads(v, 0, qkv, H + KVH, KVH, false);
        Tensor qo = q.reshape({n * H, D}), qr = q_rstd_.rows(0, n).reshape({n * H});
        Tensor ko = kk.reshape({n * KVH, D}), kr = k_rstd_.rows(0, n).reshape({n * KVH});
        k_.rmsnorm_forward(qo, qr, qp.reshape({n * H, D}), *w.q_norm, cfg_.norm_eps);
        k_.rmsnorm_forward(ko, kr, kp.reshape({n * KVH, D}), *w.k_norm, cfg_.norm_eps);
        k_.rope_cache_write(q, kk, v, kcache_[l], vcache_[l], slot, pos, cfg_.rope_theta);
      } else if (packed) {  // the parts of qkv_rope_cache_write (the same cache, bit for bit), k and v kept
        k_.copy_heads(q, 0, qkv, 0, H, false);
        k_.copy_heads(kk, 0, qkv, H, KVH, false);
        k_.copy_heads(v, 0, qkv, H + KVH, KVH, false);
        k_.rope_cache_write(q, kk, v, kcache_[l], vcache_[l], slot, pos, cfg_.rope_theta);
      } else {
        k_.qkv_rope_cache_write(q, qkv, kcache_[l], vcache_[l], slot, pos, cfg_.rope_theta);
      }
      bool done = false;
      if (packed) {
        Tensor lse = lse_.rows(0, n), cu = cu_.rows(0, docs + 1);
        try {
          k_.attention_forward(attn, lse, q, kk, v, cu, max_seqlen);
          done = true;
        } catch (const std::exception& e) {  // e.g. CUDA's attention_forward is bf16 only: the cache has all
          packed_ok_ = false;                // it needs, attention_cached from here on
          std::fprintf(stderr, "InferenceEngine: prefill attention through the cache (attention_forward: %s)\n",
                       e.what());
        }
      }
      if (!done) k_.attention_cached(attn, q, kcache_[l], vcache_[l], slot, pos);
    }
    k_.matmul_forward(proj, attn.reshape({n, cfg_.attn_out_dim()}), *w.o, nullptr);
    k_.add_rmsnorm_forward(x, proj, ln, rstd, *w.mlp_norm, cfg_.norm_eps);
    k_.matmul_forward(gu, ln, *w.gate_up, nullptr);
    if (w.polynorm) {
      Tensor ar = act_rstd_.rows(0, n);
      k_.polynorm_forward(act, ar, gu, *w.polynorm, cfg_.polynorm_eps);
    } else {
      k_.swiglu_forward(act, gu);
    }
    k_.matmul_forward(proj, act, *w.down, nullptr);
    if (l + 1 < layers_.size())
      k_.add_rmsnorm_forward(x, proj, ln, rstd, *layers_[l + 1].attn_norm, cfg_.norm_eps);
    else
      k_.add_inplace(x, proj);
  }
  // Gather the wanted rows (ascending), one copy per run of consecutive rows.
  for (size_t i = 0; i < want.size();) {
    size_t j = i + 1;
    while (j < want.size() && want[j] == want[j - 1] + 1) ++j;
    const int64_t len = int64_t(j - i), dst = out_row + int64_t(i);
    Tensor d = sel_.rows(dst, dst + len);
    k_.copy(d, x.rows(want[i], want[i] + len));
    i = j;
  }
}

Tensor InferenceEngine::head_logits(int64_t R) {
  Tensor sel = sel_.rows(0, R), norm = sel_norm_.rows(0, R), rstd = sel_rstd_.rows(0, R), logits = logits_.rows(0, R);
  k_.rmsnorm_forward(norm, rstd, sel, *final_norm_, cfg_.norm_eps);
  k_.matmul_forward(logits, norm, *head_, nullptr);
  if (vocab_limit_ > 0 && vocab_limit_ < V_) k_.mask_logits_from(logits, vocab_limit_);
  return logits;
}

void InferenceEngine::refresh_weights() {
  const int64_t H = cfg_.n_heads, KVH = cfg_.n_kv_heads, D = cfg_.head_dim;
  for (size_t l = 0; l < qkv_w_.size(); ++l) {
    const LayerWeights& w = layers_[l];
    const int64_t rows[4] = {0, H * D, (H + KVH) * D, (H + 2 * KVH) * D};
    const Tensor* part[3] = {w.q, w.k, w.v};
    const Tensor* bias[3] = {w.q_bias, w.k_bias, w.v_bias};
    for (int i = 0; i < 3; ++i) {
      Tensor dw = qkv_w_[l].rows(rows[i], rows[i + 1]);
      k_.copy(dw, *part[i]);
      if (!qkv_b_.empty()) {
        Tensor db = qkv_b_[l].rows(rows[i], rows[i + 1]);
        k_.copy(db, *bias[i]);
      }
    }
  }
}

Tensor InferenceEngine::prefill(const std::vector<int>& slots, const std::vector<std::vector<int32_t>>& prompts) {
  TEMPER_CHECK(slots.size() == prompts.size(), "InferenceEngine::prefill: ", slots.size(), " slots for ",
               prompts.size(), " prompts");
  TEMPER_CHECK(!slots.empty(), "InferenceEngine::prefill: no prompts given");
  std::vector<bool> used(size_t(max_slots_), false);
  for (size_t i = 0; i < slots.size(); ++i) {
    check_slot("prefill", slots[i]);
    TEMPER_CHECK(!used[size_t(slots[i])], "InferenceEngine::prefill: slot ", slots[i], " given twice");
    used[size_t(slots[i])] = true;
    const auto& p = prompts[i];
    TEMPER_CHECK(!p.empty(), "InferenceEngine::prefill: prompt ", i, " is empty");
    TEMPER_CHECK(int64_t(p.size()) <= max_len_, "InferenceEngine::prefill: prompt ", i, " has ", p.size(),
                 " tokens, more than the engine's max_len = ", max_len_);
    for (size_t t = 0; t < p.size(); ++t)
      TEMPER_CHECK(p[t] >= 0 && p[t] < V_, "InferenceEngine::prefill: prompt ", i, " token ", t, " = ", p[t],
                   " is outside the vocabulary [0, ", V_, ")");
  }
  refresh_weights();
  int32_t* tok = host_tok_.data<int32_t>();
  int32_t* pos = host_pos_.data<int32_t>();
  int32_t* slt = host_slot_.data<int32_t>();
  int64_t n = 0, out_row = 0;
  std::vector<int64_t> want;
  // Runs the staged rows [0, n): packed when they are whole prompts (the first row at
  // position 0, the last a prompt's last token), their boundaries the rows at position 0.
  auto flush = [&] {
    int docs = 0, max_seqlen = 0;
    if (packed_prefill() && pos[0] == 0 && !want.empty() && want.back() == n - 1) {
      int32_t* cu = host_cu_.data<int32_t>();
      for (int64_t r = 0; r < n; ++r)
        if (pos[r] == 0) cu[docs++] = int32_t(r);
      cu[docs] = int32_t(n);
      for (int d = 0; d < docs; ++d) max_seqlen = std::max(max_seqlen, cu[d + 1] - cu[d]);
      Tensor dst = cu_.rows(0, docs + 1);
      k_.copy(dst, host_cu_.rows(0, docs + 1));
    }
    forward_chunk(n, want, out_row, docs, max_seqlen);
    out_row += int64_t(want.size());
    want.clear();
    n = 0;
  };
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    const int64_t len = int64_t(p.size());
    if (n > 0 && n + len > chunk_) flush();  // a prompt starts a chunk rather than being split where it can
    for (int64_t t = 0; t < len; ++t) {
      tok[n] = p[size_t(t)];
      pos[n] = int32_t(t);
      slt[n] = slots[i];
      if (t + 1 == len) want.push_back(n);
      if (++n == chunk_) flush();
    }
    length_[size_t(slots[i])] = int(p.size());
  }
  if (n > 0) flush();
  return head_logits(int64_t(slots.size()));
}

Tensor InferenceEngine::decode(const std::vector<int>& slots, const std::vector<int32_t>& tokens,
                               const std::vector<int32_t>& positions) {
  const size_t R = slots.size();
  TEMPER_CHECK(R > 0 && tokens.size() == R && positions.size() == R, "InferenceEngine::decode: ", R, " slots, ",
               tokens.size(), " tokens and ", positions.size(), " positions (need the same positive count)");
  std::vector<bool> used(size_t(max_slots_), false);
  int32_t* tok = host_tok_.data<int32_t>();
  int32_t* pos = host_pos_.data<int32_t>();
  int32_t* slt = host_slot_.data<int32_t>();
  std::vector<int64_t> want(R);
  for (size_t i = 0; i < R; ++i) {
    const int s = slots[i];
    check_slot("decode", s);
    TEMPER_CHECK(!used[size_t(s)], "InferenceEngine::decode: slot ", s, " given twice");
    used[size_t(s)] = true;
    TEMPER_CHECK(tokens[i] >= 0 && tokens[i] < V_, "InferenceEngine::decode: token ", tokens[i], " of slot ", s,
                 " is outside the vocabulary [0, ", V_, ")");
    TEMPER_CHECK(positions[i] >= 0 && positions[i] <= length_[size_t(s)], "InferenceEngine::decode: position ",
                 positions[i], " of slot ", s, " would leave a gap (the slot holds ", length_[size_t(s)],
                 " positions)");
    TEMPER_CHECK(positions[i] < max_len_, "InferenceEngine::decode: position ", positions[i], " of slot ", s,
                 " reaches the engine's max_len = ", max_len_, " (raise the generation length limit)");
    tok[i] = tokens[i];
    pos[i] = positions[i];
    slt[i] = s;
    want[i] = int64_t(i);
  }
  for (size_t i = 0; i < R; ++i) length_[size_t(slots[i])] = positions[i] + 1;
  if (use_graphs_ && graphs_ok_ && !cfg_.differential()) {
    const int Rb = decode_bucket(int64_t(R));
    for (int i = int(R); i < Rb; ++i) {  // padding rows: slot -1 (kernels.h: the cache write skips them,
      tok[i] = 0;                         // their attention rows are NaN and stay in their rows)
      pos[i] = 0;
      slt[i] = -1;
    }
    stage();
    if (!graph_.empty() && weight_addresses() != graph_weights_) {  // the decoder's tensors moved: record again
      for (const auto& [rows, g] : graph_) k_.graph_release(g);
      graph_.clear();
    }
    if (graph_.empty()) graph_weights_ = weight_addresses();
    int id = -1;
    for (const auto& [rows, g] : graph_)
      if (rows == Rb) id = g;
    if (id < 0) {
      if (!k_.graph_begin()) {
        graphs_ok_ = false;
      } else {
        std::vector<int64_t> all(static_cast<size_t>(Rb));
        for (int i = 0; i < Rb; ++i) all[size_t(i)] = i;
        try {
          compute_chunk(Rb, all, 0);
          head_logits(Rb);
          id = k_.graph_end();
          graph_.push_back({Rb, id});
        } catch (const std::exception& e) {  // recording failed: decode call by call from now on
          try {
            k_.graph_end();
          } catch (...) {
          }
          graphs_ok_ = false;
          id = -1;
          std::fprintf(stderr, "InferenceEngine: decode steps run call by call (recording failed: %s)\n", e.what());
        }
      }
    }
    if (id >= 0) {
      k_.graph_launch(id);
      return logits_.rows(0, int64_t(R));
    }
  } else {
    stage();
  }
  compute_chunk(int64_t(R), want, 0);
  return head_logits(int64_t(R));
}

void InferenceEngine::set_vocab_limit(int n) {
  TEMPER_CHECK(n >= 0, "InferenceEngine::set_vocab_limit: ", n, " is negative");
  if (n == vocab_limit_) return;
  vocab_limit_ = n;
  for (const auto& [rows, g] : graph_) k_.graph_release(g);  // they recorded the old limit
  graph_.clear();
}

std::vector<const void*> InferenceEngine::weight_addresses() const {
  std::vector<const void*> out{embed_->raw(), final_norm_->raw(), head_->raw()};
  for (const LayerWeights& w : layers_)
    for (const Tensor* t : {w.attn_norm, w.q, w.k, w.v, w.q_bias, w.k_bias, w.v_bias, w.q_norm, w.k_norm, w.o,
                            w.mlp_norm, w.gate_up, w.down, w.polynorm})
      out.push_back(t ? t->raw() : nullptr);
  return out;
}

int InferenceEngine::decode_bucket(int64_t rows) const {
  int64_t b = 8;
  while (b < rows) b *= 2;
  return int(std::min<int64_t>(b, max_slots_));
}

void InferenceEngine::copy_slot(int dst, int src, int len) {
  check_slot("copy_slot", dst);
  check_slot("copy_slot", src);
  TEMPER_CHECK(len >= 0 && len <= length_[size_t(src)], "InferenceEngine::copy_slot: ", len,
               " positions requested but slot ", src, " holds ", length_[size_t(src)]);
  if (dst != src && len > 0) {
    const int64_t T = max_len_, row = int64_t(cfg_.n_kv_heads) * cfg_.head_dim;
    for (size_t l = 0; l < kcache_.size(); ++l) {
      std::vector<Tensor*> caches{&kcache_[l], &vcache_[l]};
      if (!k2cache_.empty()) caches.insert(caches.end(), {&k2cache_[l], &v2cache_[l]});
      for (Tensor* c : caches) {
        Tensor d = c->rows(dst, dst + 1).reshape({T, row}).rows(0, len);
        k_.copy(d, c->rows(src, src + 1).reshape({T, row}).rows(0, len));
      }
    }
  }
  length_[size_t(dst)] = len;
}

}  // namespace temper
