// PolyNorm MLP activation (Zhuo et al. 2024, "Polynomial Composition
// Activations"), and the selector between it and SwiGLU for a block's MLP.
//
//   PolyNorm(x) = w0 N(x^3) + w1 N(x^2) + w2 N(x) + b,  N(z) = z / sqrt(mean(z^2) + eps)
// with N over the hidden (F) dimension of one token and learned scalars
// w0, w1, w2, b per layer (parameter layers.{i}.mlp.polynorm [4], initialised
// 1/3, 1/3, 1/3, 0 as in Motif's released code). temper implements the GATED form on
// the fused gate|up projection: act = PolyNorm(gate) * up, out = act Wdown^T,
// i.e. SwiGLU with silu replaced by PolyNorm. As far as we know this is what
// Motif 2.6B / 12.7B use (hidden_act "poly_norm" in a Llama-style gated MLP);
// the ungated form of the PolyCom paper (act = PolyNorm(x Wup^T)) is not built.
// The kernel op is fused (one pass for the three RMS statistics, one for the
// output; kernels.h polynorm_forward / polynorm_backward).
#pragma once
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/layers.h"

namespace temper {

// a.act [N, F] from a.gu [N, 2F] (a.act_rstd [N,3] for PolyNorm).
void mlp_activation_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a);
// s.dgu from s.dact; the PolyNorm coefficients' gradient accumulates.
void mlp_activation_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                             BlockScratch& s);

}  // namespace temper
