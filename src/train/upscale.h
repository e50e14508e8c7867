// Hypercloning and depth upscaling of a trained model (`temper upscale`):
// a larger model that computes the same function at initialisation.
//
// Width by a factor f (Samragh et al. 2024, "Scaling smart: hypercloning"):
// d_model, n_heads, n_kv_heads and ffn_dim grow f-fold (head_dim stays). The
// residual stream of the new model is f copies of the old one times s, where
//   s = 1/sqrt(f) with tied embeddings (so the one matrix serves input and output),
//   s = 1 otherwise:
//   embed'            = [E ... E] * s                     [V, f C]
//   norm weights'     = [w ... w]           (RMSNorm of [x..x]*s equals that of x when eps' = eps s^2,
//                                            so model.norm_eps becomes eps * s^2)
//   q', k', v'        = tile(W, f x f) / f   biases [b ... b]: head c*H + h is a copy of head h and
//                                            uses kv head c*KVH + g, the copy of its own kv head
//   o', down'         = tile(W, f x f) * s / f               (adds s * [out ... out] to the stream)
//   gate_up'          = [tile(gate) / f ; tile(up) / f]     (ffn unit c*F + j copies unit j)
//   final_norm'       = [w ... w] * s
//   lm_head' (untied) = [W ... W] / f;  tied: embed' itself, since (E s)·(n s) summed over f copies = E·n.
// Heads grow by the head factor h (default f; any h >= 1: the head count need not follow
// d_model): q' = tile(W, h x f) / f, o' = tile(W, f x h) * s / h. Differential attention
// (the released layout, model/differential_attention.h) tiles the same way: q's groups of
// (signal heads, noise head), k's and v's pairs and o's 2D-wide column blocks are copied
// whole, so signal head c*H + i keeps its noise head c*G + i/r and key pair c*KVH + kv(i);
// lambda, the sub-layer norm and the PolyNorm coefficients are copied.
// --signal-head-factor m (differential attention only) repeats every signal head m times
// inside its group (r -> m r signal heads per noise head; noise and key/value heads stay):
// new signal head i m + j is a copy of head i, o's column block of head i is divided
// among its m copies (/ m). With m > 1 differential attention becomes grouped.
// --untie-embeddings gives a tied model its own output head (a copy of the embedding)
// first, so the residual stream is not rescaled (s = 1).
// Depth: new layers are copies of the layer before them (of layer 0 when
// inserted first) with the o and down projections zeroed, so each computes the
// identity (its residual branches add 0). --depth N spreads N - L new layers
// evenly; --insert-layers i,j,... puts one after each named original layer.
// Motif-2.6B-like to Motif-2-12.7B widths (docs/motif.md): --width-factor 2 --head-factor 1
// --signal-head-factor 4 --untie-embeddings --depth 40.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace temper {

struct UpscaleOptions {
  int width_factor = 1;            // f >= 1: d_model and ffn_dim
  int head_factor = 0;             // h >= 1: every head count; 0 = width_factor
  int signal_head_factor = 1;      // m >= 1: signal heads per noise head (differential attention)
  bool untie_embeddings = false;   // a tied model gets its own output head
  int depth = 0;                   // total layers after upscaling; 0 = unchanged (or insert_after)
  std::vector<int> insert_after;   // original layer indices (0-based) each followed by a new layer
};

struct UpscaledModel {
  ModelConfig config;
  std::map<std::string, Tensor> params;  // Decoder parameter names, host tensors of the input dtype
};

// The original layer each new layer comes after, from --depth / --insert-layers (validated).
std::vector<int> inserted_layers(const ModelConfig& c, const UpscaleOptions& o);

// params: every parameter of the Decoder of `c` by name (host, f32 or f64). Throws naming the bad option or tensor.
UpscaledModel upscale_model(const ModelConfig& c, const std::map<std::string, Tensor>& params,
                            const UpscaleOptions& o);

// `temper upscale --checkpoint IN --out OUT [--width-factor F] [--head-factor H] [--signal-head-factor M]
//  [--untie-embeddings] [--depth N | --insert-layers i,j]`:
// reads a temper checkpoint (file or directory), writes OUT/ckpt_000000000.h5 whose stored deck
// carries the new [model] shape (model.init accepts it). Returns the exit status.

}  // namespace temper
