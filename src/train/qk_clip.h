// QK-clip (the "Clip" of MuonClip, Kimi K2 2025): after an optimizer step, each
// attention head whose largest pre-softmax logit of the step,
//   S_h = max_{i, j <= i in one document} q_i,h . k_j,g(h) / sqrt(D)   (over the whole batch, all ranks),
// exceeds tau has its query and key projections scaled down so that S_h
// becomes tau: with gamma_h = tau / S_h (1 for heads at or below tau),
//   kv head g (shared by the query heads h of its group, GQA):  s_k(g) = sqrt(min_{h in g} gamma_h)
//   query head h:                                               s_q(h) = gamma_h / s_k(g)
//   rows of head h in W_q (and b_q) *= s_q(h), rows of kv head g in W_k (and b_k) *= s_k(g).
// Every logit of head h is multiplied by s_q(h) s_k(g) = gamma_h: an exceeding
// head's maximum becomes exactly tau, a head at or below tau keeps its logits
// (with one query head per kv head this is Kimi's sqrt(gamma) on both sides).
// Differential attention: both softmaxes are measured, the H signal heads (Q1 . K1) and
// the G noise-control heads (Q2 . K2), and clipped the same way on their own rows of the
// shared W_q and W_k (model/differential_attention.h: a signal key head with its signal
// query heads, a noise key head with its noise query heads). Under sequence parallelism
// each rank measures its heads over the whole sequence; the max over all ranks completes
// the vector (gathered_max_logits).
// Biases are scaled with their rows so q and k scale exactly. With qk_norm the
// per-head RMSNorm divides any scale of W_q / W_k out again (repeated rescaling
// would only shrink W_k towards the norm's eps), and the norm weights are shared
// by all heads, so they cannot clip one head: there QK-clip only measures (max
// logit, heads above tau) and changes no weight; make_optimizer warns.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "train/adamw.h"

namespace temper {

class Comm;
class Decoder;

struct QkClipStats {
  double max_logit = 0;     // largest S_h over all layers and heads
  int64_t heads_clipped = 0;
};

// The max logits the model recorded since its last zero_grad() (Decoder::set_record_max_logits),
// reduced (max) over `comm` when given (it must span the SP group): [layer][query head], -inf
// where nothing was recorded.
std::vector<std::vector<double>> gathered_max_logits(Decoder& model, Kernels& k, Comm* comm);

// Query head i of a layer (the order of the max logits) -> its rows in W_q and the key
// head it reads, in units of head_dim rows.
struct QkHeadRows {
  int64_t q_head, k_head;
};
std::vector<QkHeadRows> qk_head_rows(const ModelConfig& c);

// Rescales W_q, W_k (and biases) of the model's master weights as above (not with
// qk_norm: measures only); call model.refresh_compute() afterwards. tau must be > 0.
// heads_clipped counts the heads above tau.
QkClipStats qk_clip(Decoder& model, Kernels& k, const std::vector<std::vector<double>>& max_logits, double tau);

// The same on weights held elsewhere: scale(name, row_begin, row_end, s) multiplies
// rows [row_begin, row_end) of parameter `name` (a W_q / W_k matrix or a bias) by s.
using QkRowScaler = std::function<void(const std::string& name, int64_t row_begin, int64_t row_end, double s)>;
QkClipStats qk_clip(const ModelConfig& c, const std::vector<std::vector<double>>& max_logits, double tau,
                    const QkRowScaler& scale);

// A scaler for DP-shard's layout: each parameter as this rank's flat slice of
// ceil(numel / S) elements (slices: by name; shapes: the full shapes). Only the
// part of the rows that falls into this rank's slice is scaled (no communication).
// slices and shapes are kept by reference: they must outlive the scaler.
QkRowScaler sliced_row_scaler(Kernels& k, const std::map<std::string, ParamRef>& slices,
                              const std::map<std::string, Shape>& shapes, int rank, int S);

}  // namespace temper
