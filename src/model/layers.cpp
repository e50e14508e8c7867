// Transformer block forward/backward: RMSNorm -> q,k,v (+bias) -> [per-head
// RMSNorm] -> RoPE -> GQA attention -> o -> residual -> RMSNorm -> gate|up ->
// SwiGLU -> down -> residual. Only Kernels calls; no device code. Differential
// attention (model/differential_attention.cpp) replaces the q..attention part,
// PolyNorm (model/polynorm.cpp) the SwiGLU.
#include "model/layers.h"

#include "model/differential_attention.h"
#include "model/polynorm.h"

namespace temper {

namespace {
Tensor head_rows(const Tensor& t, int64_t n) { return t.defined() ? t.rows(0, n) : Tensor(); }
const Tensor* bias_of(const NamedParam* p) { return p ? &p->compute : nullptr; }
Tensor* bias_grad_of(NamedParam* p) { return p ? &p->grad : nullptr; }
}  // namespace

BlockActs first_rows(const BlockActs& a, int64_t n) {
  BlockActs r;
  r.x_in = head_rows(a.x_in, n);
  r.ln1 = head_rows(a.ln1, n);
  r.rstd1 = head_rows(a.rstd1, n);
  r.q_pre = head_rows(a.q_pre, n);
  r.q_rstd = head_rows(a.q_rstd, n);
  r.k_pre = head_rows(a.k_pre, n);
  r.k_rstd = head_rows(a.k_rstd, n);
  r.q = head_rows(a.q, n);
  r.k = head_rows(a.k, n);
  r.v = head_rows(a.v, n);
  r.attn = head_rows(a.attn, n);
  r.lse = head_rows(a.lse, n);
  r.x_mid = head_rows(a.x_mid, n);
  r.ln2 = head_rows(a.ln2, n);
  r.rstd2 = head_rows(a.rstd2, n);
  r.gu = head_rows(a.gu, n);
  r.act = head_rows(a.act, n);
  r.x_out = head_rows(a.x_out, n);
  r.q2 = head_rows(a.q2, n);
  r.k2 = head_rows(a.k2, n);
  r.v2 = head_rows(a.v2, n);
  r.attn_sig = head_rows(a.attn_sig, n);
  r.attn_noise = head_rows(a.attn_noise, n);
  r.lse2 = head_rows(a.lse2, n);
  r.head_rstd = head_rows(a.head_rstd, n);
  r.act_rstd = head_rows(a.act_rstd, n);
  r.proj = a.proj;  // shared scratch: views are cut by their users
  r.half = a.half;
  return r;
}

BlockScratch first_rows(const BlockScratch& s, int64_t n) {
  BlockScratch r;
  r.dln = head_rows(s.dln, n);
  r.dq = head_rows(s.dq, n);
  r.dk = head_rows(s.dk, n);
  r.dv = head_rows(s.dv, n);
  r.dattn = head_rows(s.dattn, n);
  r.dk_pre = head_rows(s.dk_pre, n);
  r.dgu = head_rows(s.dgu, n);
  r.dact = head_rows(s.dact, n);
  r.da_sig = head_rows(s.da_sig, n);
  r.da_noise = head_rows(s.da_noise, n);
  r.dq2 = head_rows(s.dq2, n);
  r.dk2 = head_rows(s.dk2, n);
  r.dv2 = head_rows(s.dv2, n);
  r.t_dout = s.t_dout;  // scratch: views are cut by their users
  r.t_dq = s.t_dq;
  r.t_dk = s.t_dk;
  r.t_dv = s.t_dv;
  return r;
}

void block_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a, const Batch& b) {
  const int64_t N = a.x_in.dim(0), A = c.attn_out_dim();
  // attention half
  k.rmsnorm_forward(a.ln1, a.rstd1, a.x_in, w.attn_norm->compute, c.norm_eps);
  if (c.differential()) {
    diff_attention_forward(k, c, w, a, b);
  } else {
    standard_attention_forward(k, c, w, a, b);
  }
  Tensor x_mid = a.x_mid;
  k.matmul_forward(x_mid, a.attn.reshape({N, A}), w.o->compute, nullptr);
  k.add_inplace(x_mid, a.x_in);
  // MLP half
  k.rmsnorm_forward(a.ln2, a.rstd2, a.x_mid, w.mlp_norm->compute, c.norm_eps);
  k.matmul_forward(a.gu, a.ln2, w.gate_up->compute, nullptr);
  mlp_activation_forward(k, c, w, a);
  k.matmul_forward(a.x_out, a.act, w.down->compute, nullptr);
  k.add_inplace(a.x_out, a.x_mid);
}

void standard_attention_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a,
                                const Batch& b) {
  const int64_t N = a.x_in.dim(0), H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim;
  Tensor q_lin = (c.qk_norm ? a.q_pre : a.q).reshape({N, H * D});
  Tensor k_lin = (c.qk_norm ? a.k_pre : a.k).reshape({N, KVH * D});
  Tensor v_lin = a.v.reshape({N, KVH * D});
  k.matmul_forward(q_lin, a.ln1, w.q->compute, bias_of(w.q_bias));
  k.matmul_forward(k_lin, a.ln1, w.k->compute, bias_of(w.k_bias));
  k.matmul_forward(v_lin, a.ln1, w.v->compute, bias_of(w.v_bias));
  if (c.qk_norm) {  // RMSNorm over each head's D values, one weight vector shared by the heads
    Tensor qo = a.q.reshape({N * H, D}), qr = a.q_rstd.reshape({N * H});
    Tensor ko = a.k.reshape({N * KVH, D}), kr = a.k_rstd.reshape({N * KVH});
    k.rmsnorm_forward(qo, qr, a.q_pre.reshape({N * H, D}), w.q_norm->compute, c.norm_eps);
    k.rmsnorm_forward(ko, kr, a.k_pre.reshape({N * KVH, D}), w.k_norm->compute, c.norm_eps);
  }
  Tensor q = a.q, kk = a.k;
  k.rope_forward(q, b.positions, c.rope_theta);
  k.rope_forward(kk, b.positions, c.rope_theta);
  attention_core_forward(k, a, b);
}

void attention_core_forward(Kernels& k, BlockActs& a, const Batch& b) {
  if (b.attention)  // e.g. Ulysses sequence parallelism
    b.attention->forward(k, a.attn, a.lse, a.q, a.k, a.v, b);
  else
    k.attention_forward(a.attn, a.lse, a.q, a.k, a.v, b.cu_seqlens, b.max_seqlen);
}

void block_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                    BlockScratch& s, Tensor& dres, const Batch& b) {
  const int64_t N = a.x_in.dim(0), A = c.attn_out_dim();
  // MLP half: x_out = x_mid + down(swiglu(gate_up(norm(x_mid))))
  k.matmul_backward(&s.dact, false, w.down->grad, nullptr, dres, a.act, w.down->compute);
  mlp_activation_backward(k, c, w, a, s);
  k.matmul_backward(&s.dln, false, w.gate_up->grad, nullptr, s.dgu, a.ln2, w.gate_up->compute);
  k.rmsnorm_backward(dres, true, w.mlp_norm->grad, s.dln, a.x_mid, w.mlp_norm->compute, a.rstd2);
  // attention half: x_mid = x_in + o(attn(rope(qk_norm(q(ln1))), ...))
  Tensor dattn2 = s.dattn.reshape({N, A});
  k.matmul_backward(&dattn2, false, w.o->grad, nullptr, dres, a.attn.reshape({N, A}), w.o->compute);
  if (c.differential()) {
    diff_attention_backward(k, c, w, a, s, b);
  } else {
    standard_attention_backward(k, c, w, a, s, b);
  }
  k.rmsnorm_backward(dres, true, w.attn_norm->grad, s.dln, a.x_in, w.attn_norm->compute, a.rstd1);
}

void standard_attention_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                                 BlockScratch& s, const Batch& b) {
  const int64_t N = a.x_in.dim(0), H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim;
  if (b.attention)  // e.g. Ulysses sequence parallelism
    b.attention->backward(k, s.dq, s.dk, s.dv, s.dattn, a.attn, a.lse, a.q, a.k, a.v, b);
  else
    k.attention_backward(s.dq, s.dk, s.dv, s.dattn, a.attn, a.lse, a.q, a.k, a.v, b.cu_seqlens, b.max_seqlen);
  k.rope_backward(s.dq, b.positions, c.rope_theta);
  k.rope_backward(s.dk, b.positions, c.rope_theta);
  Tensor dq_lin = s.dq, dk_lin = s.dk;
  if (c.qk_norm) {  // dattn is free again: it takes dq before the norm
    Tensor dq_pre = s.dattn.reshape({N * H, D}), dk_pre = s.dk_pre.reshape({N * KVH, D});
    k.rmsnorm_backward(dq_pre, false, w.q_norm->grad, s.dq.reshape({N * H, D}), a.q_pre.reshape({N * H, D}),
                       w.q_norm->compute, a.q_rstd.reshape({N * H}));
    k.rmsnorm_backward(dk_pre, false, w.k_norm->grad, s.dk.reshape({N * KVH, D}),
                       a.k_pre.reshape({N * KVH, D}), w.k_norm->compute, a.k_rstd.reshape({N * KVH}));
    dq_lin = s.dattn;
    dk_lin = s.dk_pre;
  }
  k.matmul_backward(&s.dln, false, w.q->grad, bias_grad_of(w.q_bias), dq_lin.reshape({N, H * D}), a.ln1,
                    w.q->compute);
  k.matmul_backward(&s.dln, true, w.k->grad, bias_grad_of(w.k_bias), dk_lin.reshape({N, KVH * D}), a.ln1,
                    w.k->compute);
  k.matmul_backward(&s.dln, true, w.v->grad, bias_grad_of(w.v_bias), s.dv.reshape({N, KVH * D}), a.ln1,
                    w.v->compute);
}

}  // namespace temper
