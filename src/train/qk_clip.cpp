// QK-clip (see qk_clip.h): per-head rescaling of W_q / W_k after a step.
#include "train/qk_clip.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"
#include "model/decoder.h"
#include "parallel/comm.h"
#include "train/adamw.h"

namespace temper {

std::vector<std::vector<double>> gathered_max_logits(Decoder& model, Kernels& k, Comm* comm) {
  const auto& dev = model.max_logits();
  TEMPER_CHECK(!dev.empty(), "qk_clip: the model does not record max logits (Decoder::set_record_max_logits)");
  const int64_t H = model.config().q_heads();  // differential: signal then noise-control heads
  Tensor all = Tensor::empty({int64_t(dev.size()) * H}, DType::F64);
  for (size_t l = 0; l < dev.size(); ++l) {
    Tensor h = to_host(k, dev[l]);
    for (int64_t i = 0; i < H; ++i)
      all.data<double>()[int64_t(l) * H + i] = h.dtype() == DType::F64 ? h.data<double>()[i] : h.data<float>()[i];
  }
  if (comm && comm->size() > 1) comm->allreduce(all, ReduceOp::Max);
  std::vector<std::vector<double>> out(dev.size(), std::vector<double>(size_t(H)));
  for (size_t l = 0; l < dev.size(); ++l)
    for (int64_t i = 0; i < H; ++i) out[l][size_t(i)] = all.data<double>()[int64_t(l) * H + i];
  return out;
}

QkClipStats qk_clip(Decoder& model, Kernels& k, const std::vector<std::vector<double>>& S, double tau) {
  return qk_clip(model.config(), S, tau, [&](const std::string& name, int64_t row_begin, int64_t row_end, double s) {
    Tensor rows = model.param(name).value.rows(row_begin, row_end);
    k.axpby(rows, 0.0, rows, s);
  });
}

QkRowScaler sliced_row_scaler(Kernels& k, const std::map<std::string, ParamRef>& slices,
                              const std::map<std::string, Shape>& shapes, int rank, int S) {
  return [&k, &slices, &shapes, rank, S](const std::string& name, int64_t row_begin, int64_t row_end, double s) {
    auto sl = slices.find(name);
    auto sh = shapes.find(name);
    TEMPER_CHECK(sl != slices.end() && sh != shapes.end(), "qk_clip: no slice or shape for '", name, "'");
    const int64_t numel = shape_numel(sh->second), cols = numel / sh->second[0], L = (numel + S - 1) / S;
    TEMPER_CHECK(sl->second.value.numel() == L, "qk_clip: the slice of '", name, "' has ",
                 sl->second.value.numel(), " elements, expected ", L);
    // the flat range [row_begin * cols, row_end * cols) intersected with this rank's [rank L, (rank + 1) L)
    const int64_t a = std::max(row_begin * cols, rank * L), b = std::min(row_end * cols, (rank + 1) * L);
    if (a >= b) return;
    Tensor flat = sl->second.value.reshape({L}).rows(a - rank * L, b - rank * L);
    k.axpby(flat, 0.0, flat, s);
  };
}

std::vector<QkHeadRows> qk_head_rows(const ModelConfig& c) {
  const int64_t H = c.n_heads, KVH = c.n_kv_heads;
  std::vector<QkHeadRows> rows;
  if (!c.differential()) {
    for (int64_t h = 0; h < H; ++h) rows.push_back({h, h / (H / KVH)});
    return rows;
  }
  // the released layout (model/differential_attention.h): q in groups of r signal heads and one
  // noise-control head, k in (signal key, noise key) pairs
  const int64_t G = c.n_noise_heads, r = H / G;
  for (int64_t h = 0; h < H; ++h) rows.push_back({(h / r) * (r + 1) + h % r, 2 * (h / (H / KVH))});
  for (int64_t g = 0; g < G; ++g) rows.push_back({g * (r + 1) + r, 2 * (g / (G / KVH)) + 1});
  return rows;
}

QkClipStats qk_clip(const ModelConfig& c, const std::vector<std::vector<double>>& S, double tau,
                    const QkRowScaler& scale) {
  TEMPER_CHECK(tau > 0 && std::isfinite(tau), "qk_clip: tau must be a positive number, got ", tau);
  TEMPER_CHECK(int(S.size()) == c.n_layers, "qk_clip: max logits for ", S.size(), " layers, the model has ",
               c.n_layers);
  const int64_t D = c.head_dim, Hq = c.q_heads(), KH = (c.differential() ? 2 : 1) * int64_t(c.n_kv_heads);
  const std::vector<QkHeadRows> heads = qk_head_rows(c);
  QkClipStats st;
  st.max_logit = -std::numeric_limits<double>::infinity();
  auto scale_rows = [&](const std::string& name, int64_t head, double s) { scale(name, head * D, (head + 1) * D, s); };
  for (int l = 0; l < c.n_layers; ++l) {
    TEMPER_CHECK(int64_t(S[size_t(l)].size()) == Hq, "qk_clip: layer ", l, " has ", S[size_t(l)].size(),
                 " max logits, the model has ", Hq, " query heads");
    const std::string p = "layers." + std::to_string(l) + ".attn.";
    std::vector<double> gamma(size_t(Hq), 1.0);
    for (int64_t h = 0; h < Hq; ++h) {
      const double s = S[size_t(l)][size_t(h)];
      st.max_logit = std::max(st.max_logit, s);
      if (s > tau) {
        gamma[size_t(h)] = tau / s;
        ++st.heads_clipped;
      }
    }
    if (c.qk_norm) continue;  // measured only: the per-head RMSNorm would undo any rescale
    for (int64_t g = 0; g < KH; ++g) {  // each key head with the query heads that read it
      double gmin = 1.0;
      for (int64_t h = 0; h < Hq; ++h)
        if (heads[size_t(h)].k_head == g) gmin = std::min(gmin, gamma[size_t(h)]);
      if (gmin >= 1.0) continue;  // no head of this group exceeds tau
      const double sk = std::sqrt(gmin);
      scale_rows(p + "k.weight", g, sk);
      if (c.qkv_bias) scale_rows(p + "k.bias", g, sk);
      for (int64_t h = 0; h < Hq; ++h) {
        if (heads[size_t(h)].k_head != g) continue;
        const double sq = gamma[size_t(h)] / sk;
        scale_rows(p + "q.weight", heads[size_t(h)].q_head, sq);
        if (c.qkv_bias) scale_rows(p + "q.bias", heads[size_t(h)].q_head, sq);
      }
    }
  }
  return st;
}

}  // namespace temper
