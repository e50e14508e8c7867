// (Grouped) differential attention forward/backward from Kernels calls; the
// equations and the released layout are in differential_attention.h.
#include "model/differential_attention.h"

#include "core/error.h"

namespace temper {

namespace {

// `shape` elements of a scratch buffer starting at element `offset`.
Tensor region(const Tensor& buf, int64_t offset, const Shape& shape) {
  const int64_t n = shape_numel(shape);
  TEMPER_CHECK(buf.defined() && offset + n <= buf.numel(), "differential attention: scratch buffer of ",
               buf.defined() ? buf.numel() : 0, " elements is too small for ", shape_str(shape), " at ", offset);
  return buf.reshape({buf.numel()}).rows(offset, offset + n).reshape(shape);
}

// [T, heads, D] as [T * groups, heads / groups, D] (a view).
Tensor grouped(const Tensor& t, int64_t groups) {
  return t.reshape({t.dim(0) * groups, t.dim(1) / groups, t.dim(2)});
}

// The three projections' outputs inside the shared buffer: qf [N, H+G, D], kf, vf [N, 2 KVH, D].
struct Fused {
  Tensor q, k, v;
};
Fused fused_views(const ModelConfig& c, const Tensor& proj, int64_t N) {
  const int64_t D = c.head_dim, QH = c.q_heads(), KH = 2 * int64_t(c.n_kv_heads);
  return {region(proj, 0, {N, QH, D}), region(proj, N * QH * D, {N, KH, D}), region(proj, N * (QH + KH) * D, {N, KH, D})};
}

DiffCoreActs core_acts(const BlockActs& a) {
  return {a.q, a.q2, a.k, a.k2, a.v, a.v2, a.attn_sig, a.attn_noise, a.lse, a.lse2, a.head_rstd, a.attn};
}

}  // namespace

void diff_get_half(Kernels& k, Tensor& dst, const Tensor& wide, int half) {
  const int64_t T = wide.dim(0), h = wide.dim(1), D = wide.dim(2) / 2;
  Tensor d = dst.reshape({T * h, 1, D});
  k.copy_heads(d, 0, wide.reshape({T * h, 2, D}), half, 1, false);
}

void diff_put_half(Kernels& k, Tensor& wide, const Tensor& src, int half) {
  const int64_t T = wide.dim(0), h = wide.dim(1), D = wide.dim(2) / 2;
  Tensor w = wide.reshape({T * h, 2, D});
  k.copy_heads(w, half, src.reshape({T * h, 1, D}), 0, 1, false);
}

void diff_split_heads(Kernels& k, const ModelConfig& c, const Tensor& qf, const Tensor& kf, const Tensor& vf,
                      Tensor& q1, Tensor& q2, Tensor& k1, Tensor& k2, Tensor& v1, Tensor& v2) {
  const int64_t G = c.n_noise_heads, KVH = c.n_kv_heads, r = int64_t(c.n_heads) / G;
  Tensor q1g = grouped(q1, G), q2g = grouped(q2, G);
  k.copy_heads(q1g, 0, grouped(qf, G), 0, r, false);  // group g: heads g(r+1) .. g(r+1)+r-1 are signal heads
  k.copy_heads(q2g, 0, grouped(qf, G), r, 1, false);  // head g(r+1)+r is noise head g
  auto pair_half = [&](Tensor& dst, const Tensor& src, int which) {  // pair j: heads 2j (path 1), 2j+1 (path 2)
    Tensor d = grouped(dst, KVH);
    k.copy_heads(d, 0, grouped(src, KVH), which, 1, false);
  };
  pair_half(k1, kf, 0);
  pair_half(k2, kf, 1);
  pair_half(v1, vf, 0);
  pair_half(v2, vf, 1);
}

void diff_merge_heads(Kernels& k, const ModelConfig& c, Tensor& qf, Tensor& kf, Tensor& vf, const Tensor& q1,
                      const Tensor& q2, const Tensor& k1, const Tensor& k2, const Tensor& v1, const Tensor& v2) {
  const int64_t G = c.n_noise_heads, KVH = c.n_kv_heads, r = int64_t(c.n_heads) / G;
  Tensor qg = grouped(qf, G), kg = grouped(kf, KVH), vg = grouped(vf, KVH);
  k.copy_heads(qg, 0, grouped(q1, G), 0, r, false);
  k.copy_heads(qg, r, grouped(q2, G), 0, 1, false);
  k.copy_heads(kg, 0, grouped(k1, KVH), 0, 1, false);
  k.copy_heads(kg, 1, grouped(k2, KVH), 0, 1, false);
  k.copy_heads(vg, 0, grouped(v1, KVH), 0, 1, false);
  k.copy_heads(vg, 1, grouped(v2, KVH), 0, 1, false);
}

void diff_core_forward(Kernels& k, DiffCoreActs& a, const DiffCoreParams& p, const Tensor& cu, int max_seqlen,
                       Tensor& half) {
  const int64_t T = a.q1.dim(0), D = a.q1.dim(2);
  for (int path = 0; path < 2; ++path) {
    const Tensor& q = path == 0 ? a.q1 : a.q2;
    const Tensor& kk = path == 0 ? a.k1 : a.k2;
    Tensor& lse = path == 0 ? a.lse1 : a.lse2;
    Tensor& wide = path == 0 ? a.sig : a.noise;
    Tensor o = region(half, 0, {T, q.dim(1), D});
    for (int h = 0; h < 2; ++h) {  // the same scores against V1, then V2 (lse written twice, equal)
      k.attention_forward(o, lse, q, kk, h == 0 ? a.v1 : a.v2, cu, max_seqlen);
      diff_put_half(k, wide, o, h);
    }
  }
  k.diff_attn_combine_forward(a.out, a.rstd, a.sig, a.noise, *p.lambda, *p.weight, p.lambda_init, p.eps);
}

void diff_core_backward(Kernels& k, DiffCoreGrads& g, const DiffCoreActs& a, const DiffCoreParams& p,
                        const Tensor& cu, int max_seqlen, DiffCoreTemps& t) {
  TEMPER_CHECK(p.dlambda && p.dweight, "diff_core_backward: no gradients for lambda / the sub-layer norm");
  k.diff_attn_combine_backward(g.dsig, g.dnoise, *p.dlambda, *p.dweight, g.dout, a.sig, a.noise, *p.lambda, *p.weight,
                               a.rstd, p.lambda_init);
  const int64_t T = a.q1.dim(0), D = a.q1.dim(2), kv = a.k1.dim(1);
  Tensor dk = region(t.dk, 0, {T, kv, D}), dv = region(t.dv, 0, {T, kv, D});
  for (int path = 0; path < 2; ++path) {
    const Tensor& q = path == 0 ? a.q1 : a.q2;
    const Tensor& kk = path == 0 ? a.k1 : a.k2;
    const Tensor& lse = path == 0 ? a.lse1 : a.lse2;
    const Tensor& wide = path == 0 ? a.sig : a.noise;
    const Tensor& dwide = path == 0 ? g.dsig : g.dnoise;
    Tensor& dq_out = path == 0 ? g.dq1 : g.dq2;
    Tensor& dk_out = path == 0 ? g.dk1 : g.dk2;
    const Shape qs = {T, q.dim(1), D};
    Tensor o = region(t.half, 0, qs), dout = region(t.dhalf, 0, qs), dq = region(t.dq, 0, qs);
    for (int h = 0; h < 2; ++h) {
      Tensor& dv_out = h == 0 ? g.dv1 : g.dv2;
      diff_get_half(k, o, wide, h);
      diff_get_half(k, dout, dwide, h);
      // the first call of each path writes dq, dk (and, on the signal path, dv) directly
      const bool first = h == 0;
      const bool dv_direct = path == 0;
      k.attention_backward(first ? dq_out : dq, first ? dk_out : dk, dv_direct ? dv_out : dv, dout, o, lse, q, kk,
                           h == 0 ? a.v1 : a.v2, cu, max_seqlen);
      if (!first) {
        k.add_inplace(dq_out, dq);
        k.add_inplace(dk_out, dk);
      }
      if (!dv_direct) k.add_inplace(dv_out, dv);
    }
  }
}

void diff_attention_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a, const Batch& b) {
  const int64_t N = a.x_in.dim(0), D = c.head_dim;
  Fused f = fused_views(c, a.proj, N);
  Tensor ql = f.q.reshape({N, c.q_heads() * D}), kl = f.k.reshape({N, 2 * int64_t(c.n_kv_heads) * D}),
         vl = f.v.reshape({N, 2 * int64_t(c.n_kv_heads) * D});
  k.matmul_forward(ql, a.ln1, w.q->compute, nullptr);
  k.matmul_forward(kl, a.ln1, w.k->compute, nullptr);
  k.matmul_forward(vl, a.ln1, w.v->compute, nullptr);
  diff_split_heads(k, c, f.q, f.k, f.v, a.q, a.q2, a.k, a.k2, a.v, a.v2);
  for (Tensor* t : {&a.q, &a.q2, &a.k, &a.k2}) k.rope_forward(*t, b.positions, c.rope_theta);
  DiffCoreActs ca = core_acts(a);
  const DiffCoreParams p{&w.lambda->compute, &w.head_norm->compute, nullptr, nullptr, w.lambda_init, c.diff_norm_eps};
  if (b.attention) {
    b.attention->diff_forward(k, ca, p, b);
  } else {
    Tensor half = a.half;
    diff_core_forward(k, ca, p, b.cu_seqlens, b.max_seqlen, half);
  }
}

void diff_attention_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                             BlockScratch& s, const Batch& b) {
  const int64_t N = a.x_in.dim(0), D = c.head_dim;
  const DiffCoreActs ca = core_acts(a);
  DiffCoreGrads g{s.dattn, s.dq, s.dq2, s.dk, s.dk2, s.dv, s.dv2, s.da_sig, s.da_noise};
  const DiffCoreParams p{&w.lambda->compute, &w.head_norm->compute, &w.lambda->grad, &w.head_norm->grad,
                         w.lambda_init, c.diff_norm_eps};
  if (b.attention) {
    b.attention->diff_backward(k, g, ca, p, b);
  } else {
    DiffCoreTemps t{a.half, s.t_dout, s.t_dq, s.t_dk, s.t_dv};
    diff_core_backward(k, g, ca, p, b.cu_seqlens, b.max_seqlen, t);
  }
  for (Tensor* t : {&s.dq, &s.dq2, &s.dk, &s.dk2}) k.rope_backward(*t, b.positions, c.rope_theta);
  Fused f = fused_views(c, a.proj, N);
  diff_merge_heads(k, c, f.q, f.k, f.v, s.dq, s.dq2, s.dk, s.dk2, s.dv, s.dv2);
  const int64_t KD = 2 * int64_t(c.n_kv_heads) * D;
  k.matmul_backward(&s.dln, false, w.q->grad, nullptr, f.q.reshape({N, c.q_heads() * D}), a.ln1, w.q->compute);
  k.matmul_backward(&s.dln, true, w.k->grad, nullptr, f.k.reshape({N, KD}), a.ln1, w.k->compute);
  k.matmul_backward(&s.dln, true, w.v->grad, nullptr, f.v.reshape({N, KD}), a.ln1, w.v->compute);
}

void diff_attention_cached(Kernels& k, Tensor& out, Tensor& rstd, Tensor& sig, Tensor& noise, Tensor& half,
                           const Tensor& q1, const Tensor& q2, const Tensor& k1cache, const Tensor& k2cache,
                           const Tensor& v1cache, const Tensor& v2cache, const Tensor& slot, const Tensor& pos,
                           const DiffCoreParams& p) {
  const int64_t n = q1.dim(0), D = q1.dim(2);
  for (int path = 0; path < 2; ++path) {
    const Tensor& q = path == 0 ? q1 : q2;
    Tensor& wide = path == 0 ? sig : noise;
    Tensor o = region(half, 0, {n, q.dim(1), D});
    for (int h = 0; h < 2; ++h) {
      k.attention_cached(o, q, path == 0 ? k1cache : k2cache, h == 0 ? v1cache : v2cache, slot, pos);
      diff_put_half(k, wide, o, h);
    }
  }
  k.diff_attn_combine_forward(out, rstd, sig, noise, *p.lambda, *p.weight, p.lambda_init, p.eps);
}

}  // namespace temper
