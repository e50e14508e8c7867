// Differential attention (Ye et al. 2024, "Differential Transformer") and its
// grouped form, Grouped Differential Attention (GDA; Motif 2, Lim et al. 2025),
// laid out as Motif's released models compute it (MotifForCausalLM: Motif-2.6B is
// the case G = H, Motif-2-12.7B has H = 32, G = 8, KVH = 8, D = 128; sources in
// docs/motif.md). model/layers.cpp calls these when ModelConfig::attention is
// differential or grouped_differential.
//
// Shapes: H signal heads, G noise-control heads (H % G == 0), r = H / G signal heads
// per noise head; KVH key heads per path and KVH value heads of width 2D (H % KVH == 0,
// G % KVH == 0); head dim D. Parameters of one layer (the released tensors, same order):
//   attn.q.weight  [(H+G) D, C]  q_proj: G groups of (r signal heads, then 1 noise head)
//   attn.k.weight  [2 KVH D, C]  k_proj: pairs (K1 head j, K2 head j)
//   attn.v.weight  [2 KVH D, C]  v_proj: pairs (V1 head j, V2 head j) = value head j, 2D wide
//   attn.o.weight  [C, 2 H D]    o_proj: signal head h's 2D outputs at columns [2hD, 2(h+1)D)
//   attn.lambda    [4, D]        lambda_q1, lambda_k1, lambda_q2, lambda_k2
//   attn.head_norm.weight [2D]   subln, the per-head sub-layer RMSNorm (eps = diff_norm_eps)
// From x = RMSNorm(residual) [N, C]:
//   Q = x Wq^T split into Q1 [N,H,D] (signal) and Q2 [N,G,D] (noise); K = x Wk^T into K1, K2
//   [N,KVH,D]; V = x Wv^T into V1, V2 [N,KVH,D]; RoPE on Q1, Q2, K1, K2.
//   S1[h] = softmax(Q1[h] K1[kv(h)]^T / sqrt(D) + causal/document mask)   kv(h) = h / (H/KVH)
//   S2[g] = softmax(Q2[g] K2[kv'(g)]^T / sqrt(D) + mask)                  kv'(g) = g / (G/KVH)
//   A1[h] = S1[h] [V1 | V2][kv(h)]   [N,H,2D]      A2[g] = S2[g] [V1 | V2][kv'(g)]   [N,G,2D]
//     (g(h) = h / r, so kv'(g(h)) = kv(h): a noise head uses its signal heads' values)
//   lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init    (one per layer)
//   O[h] = (1 - lambda_init) * RMSNorm_2D(A1[h] - lambda * A2[g(h)]) * w     [N,H,2D]
//   out = O Wo^T        with lambda_init = 0.8 - 0.6 exp(-0.3 (l - 1)) for the 0-based layer l
//                       unless model.diff_lambda_init fixes it.
//
// Implementation: the value halves run as two calls of the causal varlen attention
// kernel each (same scores, V1 then V2) for the signal and the noise heads, their
// outputs interleaved into A1, A2 (copy_heads); lambda, the subtraction, the per-head
// norm and the scale are one op (diff_attn_combine_*). Backward: combination backward
// -> four attention backwards (per value half: dQ, dK summed, dV per half; the
// softmax backward is linear in the (dO, O) pairs of the halves) -> RoPE backward ->
// the gradients merged back into the q|k|v layout -> three projections.
// Under Ulysses (parallel/ulysses) the core runs head-split on the whole sequence:
// rank r keeps signal heads [r H/P, (r+1) H/P) with their noise heads [r G/P, ...).
#pragma once
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/layers.h"

namespace temper {

// ln1 -> q, k, v projections -> head split -> RoPE -> core -> a.attn [N, H, 2D].
void diff_attention_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a, const Batch& b);
// s.dattn (dL/d attn) -> s.dln (dL/d ln1, overwritten); weight gradients accumulate.
void diff_attention_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                             BlockScratch& s, const Batch& b);

// Splits the fused projections (released head order, post-RoPE or not) into the core's
// Q1, Q2, K1, K2, V1, V2, and merges gradients back. qf [T, H+G, D], kf, vf [T, 2 KVH, D].
void diff_split_heads(Kernels& k, const ModelConfig& c, const Tensor& qf, const Tensor& kf, const Tensor& vf,
                      Tensor& q1, Tensor& q2, Tensor& k1, Tensor& k2, Tensor& v1, Tensor& v2);
void diff_merge_heads(Kernels& k, const ModelConfig& c, Tensor& qf, Tensor& kf, Tensor& vf, const Tensor& q1,
                      const Tensor& q2, const Tensor& k1, const Tensor& k2, const Tensor& v1, const Tensor& v2);

// The core on one rank's tensors (all of one layout; head counts from the shapes).
// half: [T, max(h,g), D] scratch (at least that many elements).
void diff_core_forward(Kernels& k, DiffCoreActs& a, const DiffCoreParams& p, const Tensor& cu_seqlens,
                       int max_seqlen, Tensor& half);
// Scratch: half as above, dhalf and dq like half, dk and dv [T, kv, D].
struct DiffCoreTemps {
  Tensor half, dhalf, dq, dk, dv;
};
void diff_core_backward(Kernels& k, DiffCoreGrads& g, const DiffCoreActs& a, const DiffCoreParams& p,
                        const Tensor& cu_seqlens, int max_seqlen, DiffCoreTemps& t);

// The combined output of one decode/prefill chunk against KV caches (model/inference):
// q1 [n,H,D], q2 [n,G,D] post-RoPE; caches [S,T,KVH,D]; sig/noise [n,H|G,2D], half
// [n, max(H,G), D] scratch; out [n,H,2D], rstd [n,H].
void diff_attention_cached(Kernels& k, Tensor& out, Tensor& rstd, Tensor& sig, Tensor& noise, Tensor& half,
                           const Tensor& q1, const Tensor& q2, const Tensor& k1cache, const Tensor& k2cache,
                           const Tensor& v1cache, const Tensor& v2cache, const Tensor& slot, const Tensor& pos,
                           const DiffCoreParams& p);

// A [T, heads, 2D] tensor's value half (0: V1, 1: V2) to or from a [T, heads, D] tensor.
void diff_get_half(Kernels& k, Tensor& dst, const Tensor& wide, int half);
void diff_put_half(Kernels& k, Tensor& wide, const Tensor& src, int half);

}  // namespace temper
