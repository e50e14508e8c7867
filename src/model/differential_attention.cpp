// (Grouped) differential attention forward/backward from Kernels calls; the
// equations are in differential_attention.h.
#include "model/differential_attention.h"

namespace temper {

void diff_attention_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a, const Batch& b) {
  const int64_t N = a.x_in.dim(0), H = c.n_heads, G = c.n_noise_heads, KVH = c.n_kv_heads, D = c.head_dim;
  Tensor q1 = a.q.reshape({N, H * D}), q2 = a.q2.reshape({N, G * D});
  Tensor k1 = a.k.reshape({N, KVH * D}), k2 = a.k2.reshape({N, KVH * D}), v = a.v.reshape({N, KVH * D});
  k.matmul_forward(q1, a.ln1, w.q->compute, nullptr);
  k.matmul_forward(q2, a.ln1, w.q2->compute, nullptr);
  k.matmul_forward(k1, a.ln1, w.k->compute, nullptr);
  k.matmul_forward(k2, a.ln1, w.k2->compute, nullptr);
  k.matmul_forward(v, a.ln1, w.v->compute, nullptr);
  for (Tensor* t : {&a.q, &a.q2, &a.k, &a.k2}) k.rope_forward(*t, b.positions, c.rope_theta);
  k.attention_forward(a.attn_sig, a.lse, a.q, a.k, a.v, b.cu_seqlens, b.max_seqlen);
  k.attention_forward(a.attn_noise, a.lse2, a.q2, a.k2, a.v, b.cu_seqlens, b.max_seqlen);
  k.diff_attn_combine_forward(a.attn, a.head_rstd, a.attn_sig, a.attn_noise, w.lambda->compute,
                              w.head_norm->compute, w.lambda_init, c.norm_eps);
}

void diff_attention_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                             BlockScratch& s, const Batch& b) {
  const int64_t N = a.x_in.dim(0), H = c.n_heads, G = c.n_noise_heads, KVH = c.n_kv_heads, D = c.head_dim;
  k.diff_attn_combine_backward(s.da_sig, s.da_noise, w.lambda->grad, w.head_norm->grad, s.dattn, a.attn_sig,
                               a.attn_noise, w.lambda->compute, w.head_norm->compute, a.head_rstd, w.lambda_init);
  k.attention_backward(s.dq, s.dk, s.dv, s.da_sig, a.attn_sig, a.lse, a.q, a.k, a.v, b.cu_seqlens, b.max_seqlen);
  k.attention_backward(s.dq2, s.dk2, s.dv2, s.da_noise, a.attn_noise, a.lse2, a.q2, a.k2, a.v, b.cu_seqlens,
                       b.max_seqlen);
  k.add_inplace(s.dv, s.dv2);
  for (Tensor* t : {&s.dq, &s.dq2, &s.dk, &s.dk2}) k.rope_backward(*t, b.positions, c.rope_theta);
  k.matmul_backward(&s.dln, false, w.q->grad, nullptr, s.dq.reshape({N, H * D}), a.ln1, w.q->compute);
  k.matmul_backward(&s.dln, true, w.q2->grad, nullptr, s.dq2.reshape({N, G * D}), a.ln1, w.q2->compute);
  k.matmul_backward(&s.dln, true, w.k->grad, nullptr, s.dk.reshape({N, KVH * D}), a.ln1, w.k->compute);
  k.matmul_backward(&s.dln, true, w.k2->grad, nullptr, s.dk2.reshape({N, KVH * D}), a.ln1, w.k2->compute);
  k.matmul_backward(&s.dln, true, w.v->grad, nullptr, s.dv.reshape({N, KVH * D}), a.ln1, w.v->compute);
}

}  // namespace temper
