// Decoder: parameters, activation buffers, and the whole-model forward/backward
// (embedding -> blocks -> final RMSNorm -> chunked output head).
#include "model/decoder.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/polynorm.h"

namespace temper {

namespace {
// How init_random fills a tensor, decided from its role (not parsed from its name).
enum class Init : uint8_t { Normal, NormalResidualOut, One, Zero, Lambda, PolyNormCoef };

Init init_of(const std::string& name) {
  auto ends_with = [&](const char* s) {
    std::string suf(s);
    return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (ends_with("norm.weight")) return Init::One;
  if (ends_with("attn.lambda")) return Init::Lambda;      // normal(0, 0.1), as in the Diff Transformer
  if (ends_with("mlp.polynorm")) return Init::PolyNormCoef;  // 1/3, 1/3, 1/3, 0
  if (ends_with(".bias")) return Init::Zero;
  if (ends_with("attn.o.weight") || ends_with("mlp.down.weight")) return Init::NormalResidualOut;
  return Init::Normal;
}
}  // namespace

Decoder::Decoder(const ModelConfig& cfg, Kernels& k, DType param_dtype) : cfg_(cfg), k_(k) {
  cfg_.validate();
  TEMPER_CHECK(param_dtype == DType::F32 || param_dtype == DType::F64, "Decoder: parameter dtype must be f32 or f64, got ",
               dtype_name(param_dtype));
  param_dtype_ = param_dtype;
  const bool f64 = param_dtype == DType::F64;
  compute_dtype_ = f64 ? DType::F64 : k.act_dtype();
  grad_dtype_ = f64 ? DType::F64 : DType::F32;
  stat_dtype_ = grad_dtype_;

  const int64_t V = cfg_.vocab_size, C = cfg_.d_model, H = cfg_.n_heads, KVH = cfg_.n_kv_heads,
                D = cfg_.head_dim, F = cfg_.ffn_dim, L = cfg_.n_layers;
  (void)H;
  params_.reserve(size_t(3 + 18 * L));  // pointers into params_ stay valid: never reallocated
  embed_ = &add_param("embed", {V, C}, true);
  blocks_.resize(size_t(L));
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    BlockWeights& w = blocks_[size_t(l)];
    w.attn_norm = &add_param(p + "attn_norm.weight", {C}, false);
    // differential attention: the released layout, q [(H+G) D, C], k and v [2 KVH D, C] (model/differential_attention.h)
    const int64_t kv_rows = (cfg_.differential() ? 2 : 1) * KVH * D;
    w.q = &add_param(p + "attn.q.weight", {cfg_.q_heads() * D, C}, true);
    w.k = &add_param(p + "attn.k.weight", {kv_rows, C}, true);
    w.v = &add_param(p + "attn.v.weight", {kv_rows, C}, true);
    if (cfg_.qkv_bias) {
      w.q_bias = &add_param(p + "attn.q.bias", {H * D}, false);
      w.k_bias = &add_param(p + "attn.k.bias", {KVH * D}, false);
      w.v_bias = &add_param(p + "attn.v.bias", {KVH * D}, false);
    }
    if (cfg_.qk_norm) {
      w.q_norm = &add_param(p + "attn.q_norm.weight", {D}, false);
      w.k_norm = &add_param(p + "attn.k_norm.weight", {D}, false);
    }
    if (cfg_.differential()) {
      w.lambda = &add_param(p + "attn.lambda", {4, D}, false);
      w.head_norm = &add_param(p + "attn.head_norm.weight", {2 * D}, false);
      w.lambda_init = cfg_.lambda_init(int(l));
    }
    w.o = &add_param(p + "attn.o.weight", {C, cfg_.attn_out_dim()}, true);
    w.mlp_norm = &add_param(p + "mlp_norm.weight", {C}, false);
    w.gate_up = &add_param(p + "mlp.gate_up.weight", {2 * F, C}, true);
    w.down = &add_param(p + "mlp.down.weight", {C, F}, true);
    if (cfg_.mlp_activation == MlpActivation::PolyNorm) w.polynorm = &add_param(p + "mlp.polynorm", {4}, false);
  }
  final_norm_ = &add_param("final_norm.weight", {C}, false);
  head_ = cfg_.tie_embeddings ? embed_ : &add_param("lm_head.weight", {V, C}, true);
  // All gradients are views of one buffer, each starting at a multiple of 64
  // elements (256 bytes in f32), so that zero_grad() is one memset while they
  // stay resident (set_param_hooks hands them to the hooks).
  constexpr int64_t kAlign = 64;
  int64_t total = 0;
  std::vector<int64_t> offset;
  for (const auto& p : params_) {
    offset.push_back(total);
    total += (p.value.numel() + kAlign - 1) / kAlign * kAlign;
  }
  grad_flat_ = k_.alloc({total}, grad_dtype_);
  k_.zero(grad_flat_);
  for (size_t i = 0; i < params_.size(); ++i) {
    NamedParam& p = params_[i];
    p.grad = grad_flat_.rows(offset[i], offset[i] + p.value.numel()).reshape(p.value.shape());
  }
  // Until init_random: zero matrices, unit norms (a defined, if useless, model).
  for (auto& p : params_) k_.zero(p.value);
  init_random(0);
}

NamedParam& Decoder::add_param(const std::string& name, const Shape& shape, bool decay) {
  TEMPER_CHECK(params_.size() < params_.capacity(), "Decoder: internal error, parameter list overflow at ", name);
  NamedParam p;
  p.name = name;
  p.value = k_.alloc(shape, param_dtype_);
  p.decay = decay;  // grad: a view of the one gradient buffer (constructor)
  p.compute = compute_dtype_ == param_dtype_ ? p.value : k_.alloc(shape, compute_dtype_);
  params_.push_back(std::move(p));
  return params_.back();
}

NamedParam& Decoder::param(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return p;
  fail("Decoder: no parameter named '", name, "' (names look like 'layers.0.attn.q.weight')");
}

void Decoder::init_random(uint64_t seed) {
  const double std = cfg_.init_std, out_std = cfg_.init_std / std::sqrt(2.0 * cfg_.n_layers);
  // Normal draws on the backend, in place: parameter i is stream i of the counter-based
  // generator (kernels.h fill_normal), so the values depend on the seed and the parameter
  // list only: the same on every backend, mesh and thread count.
  for (size_t i = 0; i < params_.size(); ++i) {
    NamedParam& p = params_[i];
    const Init kind = init_of(p.name);
    if (kind == Init::Zero) {
      k_.zero(p.value);
    } else if (kind == Init::Normal || kind == Init::NormalResidualOut || kind == Init::Lambda) {
      const double s = kind == Init::Normal ? std : kind == Init::NormalResidualOut ? out_std : 0.1;
      k_.fill_normal(p.value, seed, uint32_t(i), s);
    } else {  // One, PolyNormCoef: a few values, through the host
      std::vector<double> h(size_t(p.value.numel()));
      for (size_t j = 0; j < h.size(); ++j) h[j] = kind == Init::One ? 1.0 : j < 3 ? 1.0 / 3.0 : 0.0;
      Tensor dev = to_device(k_, h, param_dtype_);  // converted on the host
      k_.copy(p.value, dev.reshape(p.value.shape()));
    }
  }
  refresh_compute();
}

void Decoder::refresh_compute() {
  for (auto& p : params_)
    if (p.compute.raw() != p.value.raw()) k_.copy(p.compute, p.value);
}

Checkpointing checkpointing_from_name(const std::string& name) {
  if (name == "none") return Checkpointing::None;
  if (name == "selective") return Checkpointing::Selective;
  if (name == "full") return Checkpointing::Full;
  fail("activation checkpointing '", name, "' is not one of none, selective, full");
}

const char* checkpointing_name(Checkpointing c) {
  switch (c) {
    case Checkpointing::None: return "none";
    case Checkpointing::Selective: return "selective";
    case Checkpointing::Full: return "full";
  }
  return "?";
}

RecomputeParts recompute_parts_from_names(const std::vector<std::string>& names) {
  TEMPER_CHECK(!names.empty(), "recompute parts: name at least one of attention, mlp");
  RecomputeParts p{false, false};
  for (const auto& n : names) {
    if (n == "attention") p.attention = true;
    else if (n == "mlp") p.mlp = true;
    else fail("recompute part '", n, "' is not one of attention, mlp");
  }
  return p;
}

std::string recompute_parts_name(RecomputeParts p) {
  return p.attention && p.mlp ? "attention,mlp" : p.attention ? "attention" : p.mlp ? "mlp" : "";
}

void Decoder::set_checkpointing(Checkpointing c, RecomputeParts parts) {
  if (c == ckpt_ && parts.attention == parts_.attention && parts.mlp == parts_.mlp) return;
  TEMPER_CHECK(!(c == Checkpointing::Selective && parts.attention && cfg_.differential()),
               "selective recomputation of the attention core is available for standard attention only "
               "(model.attention = differential / grouped_differential keeps it: use model.recompute = mlp)");
  ckpt_ = c;
  parts_ = parts;
  buf_ = Buffers();
  allocated_bytes_ = 0;
  capacity_ = 0;
  acts_for_n_ = -1;
}

void Decoder::zero_grad() {
  if (grad_flat_.defined()) {
    k_.zero(grad_flat_);  // every gradient at once
  } else {
    for (auto& p : params_)
      if (p.grad.defined()) k_.zero(p.grad);
  }
  reset_max_logits();
}

void Decoder::set_param_hooks(LayerParamHooks* h) {
  hooks_ = h;
  // The hooks manage the gradients from now on (DpShard releases them and makes
  // per-layer ones): the one buffer is no longer held here, so it is freed once
  // no view of it remains, and zero_grad() goes parameter by parameter.
  if (h) grad_flat_ = Tensor();
}

void Decoder::set_record_max_logits(bool on) {
  max_logits_.clear();
  if (!on) return;
  for (int l = 0; l < cfg_.n_layers; ++l) max_logits_.push_back(k_.alloc({cfg_.q_heads()}, stat_dtype_));
  reset_max_logits();
}

void Decoder::record_max_logits(int l, const BlockActs& a, const Batch& b) {
  // [H] of the query heads, or [H + G] with differential attention: signal heads (Q1 against K1),
  // then noise-control heads (Q2 against K2). Under Ulysses the core sees the whole sequence.
  Tensor& out = max_logits_[size_t(l)];
  const int64_t H = cfg_.n_heads;
  auto one = [&](Tensor dst, const Tensor& q, const Tensor& kk) {
    if (b.attention) b.attention->max_logit(k_, dst, q, kk, b);
    else k_.attention_max_logit(dst, q, kk, b.cu_seqlens, b.max_seqlen);
  };
  if (!cfg_.differential()) {
    one(out, a.q, a.k);
    return;
  }
  one(out.rows(0, H), a.q, a.k);
  one(out.rows(H, cfg_.q_heads()), a.q2, a.k2);
}

void Decoder::reset_max_logits() {
  if (max_logits_.empty()) return;
  Tensor minus_inf = to_device(k_, std::vector<double>(size_t(cfg_.q_heads()), -INFINITY), stat_dtype_);
  for (auto& t : max_logits_) k_.copy(t, minus_inf);
}

int64_t Decoder::plan_buffers(int64_t n, Buffers& buf, bool allocate) const {
  const int64_t C = cfg_.d_model, H = cfg_.n_heads, KVH = cfg_.n_kv_heads, D = cfg_.head_dim, F = cfg_.ffn_dim;
  const int64_t G = cfg_.n_noise_heads;
  const bool diff = cfg_.differential();
  const int64_t Dv = diff ? 2 * D : D;  // width of one head's attention output (2D: the released value heads)
  const int L = cfg_.n_layers;
  const DType act = compute_dtype_, st = stat_dtype_;
  int64_t bytes = 0;
  auto add = [&](Tensor& slot, const Shape& shape, DType dt) {
    bytes += shape_numel(shape) * int64_t(dtype_size(dt));
    if (allocate) slot = k_.alloc(shape, dt);
  };
  buf.resid.assign(size_t(L + 1), Tensor());
  buf.blocks.assign(size_t(L), BlockActs());
  for (auto& r : buf.resid) add(r, {n, C}, act);
  auto add_mlp = [&](BlockActs& a) {
    add(a.gu, {n, 2 * F}, act);
    add(a.act, {n, F}, act);
    if (cfg_.mlp_activation == MlpActivation::PolyNorm) add(a.act_rstd, {n, 3}, st);
  };
  // The per-block tensors of one block; `mlp` / `attn` false leave gu/act / attn/lse to the caller.
  auto add_block = [&](BlockActs& a, bool mlp, bool attn) {
    add(a.ln1, {n, C}, act);
    add(a.rstd1, {n}, st);
    if (cfg_.qk_norm) {
      add(a.q_pre, {n, H, D}, act);
      add(a.q_rstd, {n, H}, st);
      add(a.k_pre, {n, KVH, D}, act);
      add(a.k_rstd, {n, KVH}, st);
    }
    add(a.q, {n, H, D}, act);
    add(a.k, {n, KVH, D}, act);
    add(a.v, {n, KVH, D}, act);
    if (attn) {
      add(a.attn, {n, H, Dv}, act);
      add(a.lse, {n, H}, st);
    }
    add(a.x_mid, {n, C}, act);
    add(a.ln2, {n, C}, act);
    add(a.rstd2, {n}, st);
    if (diff) {
      add(a.q2, {n, G, D}, act);
      add(a.k2, {n, KVH, D}, act);
      add(a.v2, {n, KVH, D}, act);
      add(a.attn_sig, {n, H, Dv}, act);
      add(a.attn_noise, {n, G, Dv}, act);
      add(a.lse2, {n, G}, st);
      add(a.head_rstd, {n, H}, st);
    }
    if (mlp) add_mlp(a);
  };
  // differential attention: the q|k|v projection before the head split and one attention half,
  // shared by every block (model/differential_attention.cpp)
  Tensor proj, half;
  if (diff) {
    add(proj, {n, (cfg_.q_heads() + 4 * KVH) * D}, act);
    add(half, {n, std::max(H, G), D}, act);
  }
  buf.work = BlockActs();
  if (ckpt_ == Checkpointing::Full) {
    add_block(buf.work, true, true);  // one work area; blocks keep only their input (resid)
  } else if (ckpt_ == Checkpointing::Selective) {
    if (parts_.mlp) add_mlp(buf.work);  // shared MLP activations, recomputed in backward
    if (parts_.attention) {
      add(buf.work.attn, {n, H, D}, act);  // shared attention core output, recomputed in backward
      add(buf.work.lse, {n, H}, st);
    }
  }
  buf.work.proj = proj;
  buf.work.half = half;
  for (int l = 0; l < L; ++l) {
    BlockActs& a = buf.blocks[size_t(l)];
    if (ckpt_ == Checkpointing::Full) {
      a = buf.work;
    } else {
      const bool sel = ckpt_ == Checkpointing::Selective;
      add_block(a, !(sel && parts_.mlp), !(sel && parts_.attention));
      if (sel && parts_.mlp) {
        a.gu = buf.work.gu;
        a.act = buf.work.act;
        a.act_rstd = buf.work.act_rstd;
      }
      if (sel && parts_.attention) {
        a.attn = buf.work.attn;
        a.lse = buf.work.lse;
      }
      a.proj = proj;
      a.half = half;
    }
    a.x_in = buf.resid[size_t(l)];
    a.x_out = buf.resid[size_t(l + 1)];
  }
  add(buf.lnf, {n, C}, act);
  add(buf.rstdf, {n}, st);
  BlockScratch& s = buf.scratch;
  add(s.dln, {n, C}, act);
  add(s.dq, {n, H, D}, act);
  add(s.dk, {n, KVH, D}, act);
  add(s.dv, {n, KVH, D}, act);
  add(s.dattn, {n, H, Dv}, act);
  if (cfg_.qk_norm) add(s.dk_pre, {n, KVH, D}, act);
  if (diff) {
    add(s.da_sig, {n, H, Dv}, act);
    add(s.da_noise, {n, G, Dv}, act);
    add(s.dq2, {n, G, D}, act);
    add(s.dk2, {n, KVH, D}, act);
    add(s.dv2, {n, KVH, D}, act);
    add(s.t_dout, {n, std::max(H, G), D}, act);
    add(s.t_dq, {n, std::max(H, G), D}, act);
    add(s.t_dk, {n, KVH, D}, act);
    add(s.t_dv, {n, KVH, D}, act);
  }
  add(s.dgu, {n, 2 * F}, act);
  add(s.dact, {n, F}, act);
  add(buf.dres, {n, C}, act);
  add(buf.logp_tmp, {n}, st);
  return bytes;
}

int64_t Decoder::activation_bytes(int64_t n_tokens) const {
  TEMPER_CHECK(n_tokens >= 0, "activation_bytes: negative token count ", n_tokens);
  Buffers dummy;
  return plan_buffers(n_tokens, dummy, false);
}

void Decoder::ensure_capacity(int64_t n) {
  if (n <= capacity_) return;
  buf_ = Buffers();  // release the old buffers before allocating the larger ones
  allocated_bytes_ = 0;
  capacity_ = 0;
  acts_for_n_ = -1;
  Buffers nb;
  allocated_bytes_ = plan_buffers(n, nb, true);
  buf_ = std::move(nb);
  capacity_ = n;
}

BlockActs Decoder::block_view(int l, int64_t n) const { return first_rows(buf_.blocks[size_t(l)], n); }

void Decoder::check_batch(const Batch& b) const {
  const int64_t n = b.n_tokens;
  TEMPER_CHECK(n > 0, "Decoder: empty batch (n_tokens = ", n, ")");
  auto check = [&](const Tensor& t, const char* what, int64_t numel) {
    TEMPER_CHECK(t.defined(), "Decoder: batch.", what, " is not set");
    TEMPER_CHECK(t.dtype() == DType::I32 && t.device() == k_.device() && t.ndim() == 1,
                 "Decoder: batch.", what, " must be a 1-d i32 tensor on ", device_name(k_.device()), ", got ",
                 dtype_name(t.dtype()), " ", shape_str(t.shape()), " on ", device_name(t.device()));
    if (numel >= 0)
      TEMPER_CHECK(t.numel() == numel, "Decoder: batch.", what, " has ", t.numel(), " entries, expected ", numel);
  };
  check(b.tokens, "tokens", n);
  check(b.targets, "targets", n);
  check(b.positions, "positions", n);
  check(b.cu_seqlens, "cu_seqlens", -1);
  TEMPER_CHECK(b.cu_seqlens.numel() >= 2, "Decoder: batch.cu_seqlens needs at least 2 entries");
  const int64_t seq = b.attention ? n * b.attention->seq_parallel() : n;  // tokens attention sees
  TEMPER_CHECK(b.max_seqlen > 0 && b.max_seqlen <= seq, "Decoder: batch.max_seqlen ", b.max_seqlen,
               " must be in [1, ", seq, "] (the tokens of the whole sequence)");
}

void Decoder::run_forward(const Batch& b) {
  check_batch(b);
  const int64_t n = b.n_tokens;
  ensure_capacity(n);
  acts_for_n_ = -1;
  if (hooks_) hooks_->before_forward(LayerParamHooks::kEmbed);
  Tensor x0 = buf_.resid[0].rows(0, n);
  k_.embedding_forward(x0, b.tokens, embed_->compute);
  if (hooks_) hooks_->after_forward(LayerParamHooks::kEmbed);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    BlockActs a = block_view(l, n);
    if (hooks_) hooks_->before_forward(l);
    block_forward(k_, cfg_, blocks_[size_t(l)], a, b);
    if (!max_logits_.empty()) record_max_logits(l, a, b);
    if (hooks_) hooks_->after_forward(l);
  }
  Tensor lnf = buf_.lnf.rows(0, n), rstdf = buf_.rstdf.rows(0, n);
  if (hooks_) hooks_->before_forward(LayerParamHooks::kHead);
  k_.rmsnorm_forward(lnf, rstdf, buf_.resid[size_t(cfg_.n_layers)].rows(0, n), final_norm_->compute, cfg_.norm_eps);
}

void Decoder::forward(const Batch& b, Tensor& logp) {
  run_forward(b);
  const int64_t n = b.n_tokens;
  if (!logp.defined() || logp.numel() != n || logp.dtype() != stat_dtype_ || logp.device() != k_.device())
    logp = k_.alloc({n}, stat_dtype_);
  k_.lm_head_logprobs(logp, buf_.lnf.rows(0, n), head_->compute, b.targets);
  if (hooks_) hooks_->after_forward(LayerParamHooks::kHead);
  acts_for_n_ = n;
}

void Decoder::backward(const Batch& b, const Tensor& dlogp) {
  const int64_t n = b.n_tokens;
  TEMPER_CHECK(acts_for_n_ == n && n > 0, "Decoder::backward: no activations for this batch of ", n,
               " tokens; call forward with the same batch first (logits_at overwrites them)");
  Tensor logp = buf_.logp_tmp.rows(0, n);
  backward_from_head(b, dlogp, logp);
}

void Decoder::forward_backward(const Batch& b, const Tensor& dlogp, Tensor& logp) {
  run_forward(b);
  const int64_t n = b.n_tokens;
  if (!logp.defined() || logp.numel() != n || logp.dtype() != stat_dtype_ || logp.device() != k_.device())
    logp = k_.alloc({n}, stat_dtype_);
  acts_for_n_ = n;
  backward_from_head(b, dlogp, logp);
}

void Decoder::backward_from_head(const Batch& b, const Tensor& dlogp, Tensor& logp) {
  const int64_t n = b.n_tokens;
  TEMPER_CHECK(dlogp.defined() && dlogp.numel() == n && dlogp.dtype() == stat_dtype_,
               "Decoder::backward: dlogp must be ", dtype_name(stat_dtype_), "[", n, "], got ",
               dlogp.defined() ? dtype_name(dlogp.dtype()) : "undefined", " ", shape_str(dlogp.shape()));
  BlockScratch s = first_rows(buf_.scratch, n);
  Tensor dres = buf_.dres.rows(0, n);
  Tensor lnf = buf_.lnf.rows(0, n), dlnf = s.dln;
  if (hooks_) hooks_->before_backward(LayerParamHooks::kHead);
  k_.lm_head_logprobs_backward(logp, &dlnf, head_->grad, lnf, head_->compute, b.targets, dlogp);
  k_.rmsnorm_backward(dres, false, final_norm_->grad, dlnf, buf_.resid[size_t(cfg_.n_layers)].rows(0, n),
                      final_norm_->compute, buf_.rstdf.rows(0, n));
  if (hooks_) hooks_->after_backward(LayerParamHooks::kHead);
  for (int l = cfg_.n_layers - 1; l >= 0; --l) {
    BlockActs a = block_view(l, n);
    const BlockWeights& w = blocks_[size_t(l)];
    if (hooks_) hooks_->before_backward(l);
    if (ckpt_ == Checkpointing::Full) {
      a.x_out = s.dln;  // the recomputed output is not needed; dln is free until block_backward
      block_forward(k_, cfg_, w, a, b);
      a.x_out = block_view(l, n).x_out;
    } else if (ckpt_ == Checkpointing::Selective) {
      if (parts_.attention) attention_core_forward(k_, a, b);
      if (parts_.mlp) {
        k_.matmul_forward(a.gu, a.ln2, w.gate_up->compute, nullptr);
        mlp_activation_forward(k_, cfg_, w, a);
      }
    }
    block_backward(k_, cfg_, w, a, s, dres, b);
    if (hooks_) hooks_->after_backward(l);
  }
  if (hooks_) hooks_->before_backward(LayerParamHooks::kEmbed);
  k_.embedding_backward(embed_->grad, dres, b.tokens);
  if (hooks_) hooks_->after_backward(LayerParamHooks::kEmbed);
}

void Decoder::logits_at(const Batch& b, const std::vector<int64_t>& token_index, Tensor& logits) {
  const int64_t rows = int64_t(token_index.size());
  TEMPER_CHECK(rows > 0, "Decoder::logits_at: no token indices given");
  for (int64_t i : token_index)
    TEMPER_CHECK(i >= 0 && i < b.n_tokens, "Decoder::logits_at: token index ", i, " outside the batch of ",
                 b.n_tokens, " tokens");
  run_forward(b);
  const int64_t C = cfg_.d_model, V = cfg_.vocab_size;
  Tensor sel = k_.alloc({rows, C}, compute_dtype_);
  for (int64_t r = 0; r < rows; ++r) {  // gather the rows through copies (no gather kernel needed)
    Tensor dst = sel.rows(r, r + 1);
    k_.copy(dst, buf_.lnf.rows(token_index[size_t(r)], token_index[size_t(r)] + 1));
  }
  if (!logits.defined() || logits.shape() != Shape{rows, V} || logits.dtype() != compute_dtype_ ||
      logits.device() != k_.device())
    logits = k_.alloc({rows, V}, compute_dtype_);
  k_.matmul_forward(logits, sel, head_->compute, nullptr);
  if (hooks_) hooks_->after_forward(LayerParamHooks::kHead);
}

}  // namespace temper
