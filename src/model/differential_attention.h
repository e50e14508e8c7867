// Differential attention (Ye et al. 2024, "Differential Transformer") and its
// grouped form, Grouped Differential Attention (GDA; Motif 2, Lim et al. 2025),
// as the attention part of a block (model/layers.cpp calls these when
// ModelConfig::attention is differential or grouped_differential).
//
// Shapes: H signal heads, G noise-control heads (H % G == 0, G % KVH == 0),
// KVH key/value heads, head dim D; r = H/G signal heads share one noise head.
// From x = RMSNorm(residual) [N, C]:
//   Q1 = x Wq^T  [N,H,D]   K1 = x Wk^T  [N,KVH,D]   V = x Wv^T [N,KVH,D]
//   Q2 = x Wq2^T [N,G,D]   K2 = x Wk2^T [N,KVH,D]         (RoPE on Q1,K1,Q2,K2)
//   A1[h] = softmax(Q1[h] K1[kv(h)]^T / sqrt(D) + causal/document mask) V[kv(h)]
//   A2[g] = softmax(Q2[g] K2[kv'(g)]^T / sqrt(D) + mask) V[kv'(g)]
//     kv(h) = h / (H/KVH), kv'(g) = g / (G/KVH); g(h) = h / r, so kv'(g(h)) = kv(h):
//     a noise head's map multiplies the same V as the signal heads it serves.
//   lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init   (lq1..lk2 learned [D]
//            vectors per layer, one lambda per layer shared by the heads)
//   O[h] = (1 - lambda_init) * RMSNorm_D(A1[h] - lambda * A2[g(h)]) (weight [D]
//          shared by the heads: the Diff Transformer's per-head "subln")
//   out = concat_h O[h] Wo^T
// Since the maps are normalised, A1 - lambda A2 = (softmax1 - lambda softmax2) V,
// the paper's form. Differential attention is the case G = H. lambda_init is
// 0.8 - 0.6 exp(-0.3 l) for the 0-based layer l (= (layer - 1) 1-based), unless
// model.diff_lambda_init fixes it. Value heads have dimension D (Ye et al. use
// 2d-wide values with d-wide query/key halves; temper's kernels need one D, so
// D here is both: the same maps, with half the value width per head).
//
// Implementation: two calls of the causal varlen GQA attention kernel (H signal
// heads, G noise heads) and one combination op (diff_attn_combine_*), so the
// fast attention kernels serve both paths. Backward: combination backward ->
// two attention backwards (dV summed) -> RoPE backward -> five projections.
#pragma once
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/layers.h"

namespace temper {

// ln1 -> q, q2, k, k2, v -> RoPE -> attn_sig (+lse), attn_noise (+lse2) -> attn (+head_rstd).
void diff_attention_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a, const Batch& b);
// s.dattn (dL/d attn) -> s.dln (dL/d ln1, overwritten); weight gradients accumulate.
void diff_attention_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                             BlockScratch& s, const Batch& b);

}  // namespace temper
