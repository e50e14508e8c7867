// Hypercloning (width) and identity-layer insertion (depth); see upscale.h.
#include "train/upscale.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace temper {

namespace {

// A host matrix in double (vectors are [n, 1]).
struct Mat {
  int64_t r = 0, c = 0;
  std::vector<double> v;
};

Mat read(const std::map<std::string, Tensor>& ps, const std::string& name) {
  auto it = ps.find(name);
  TEMPER_CHECK(it != ps.end(), "upscale: the model has no tensor '", name, "'");
  const Tensor& t = it->second;
  TEMPER_CHECK(t.device() == Device::CPU && (t.dtype() == DType::F32 || t.dtype() == DType::F64) && t.ndim() <= 2 &&
                   t.ndim() >= 1, "upscale: tensor '", name, "' must be a host f32/f64 vector or matrix, got ",
               dtype_name(t.dtype()), " ", shape_str(t.shape()));
  Mat m{t.dim(0), t.ndim() == 2 ? t.dim(1) : 1, std::vector<double>(size_t(t.numel()))};
  for (int64_t i = 0; i < t.numel(); ++i)
    m.v[size_t(i)] = t.dtype() == DType::F64 ? t.data<double>()[i] : double(t.data<float>()[i]);
  return m;
}

Tensor write(const Mat& m, bool vector, DType dt) {
  Tensor t = Tensor::empty(vector ? Shape{m.r} : Shape{m.r, m.c}, dt);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dt == DType::F64) t.data<double>()[i] = m.v[size_t(i)];
    else t.data<float>()[i] = float(m.v[size_t(i)]);
  }
  return t;
}

// fr x fc blocks, each a * scale.
Mat tile(const Mat& a, int64_t fr, int64_t fc, double scale) {
  Mat o{a.r * fr, a.c * fc, std::vector<double>(size_t(a.r * fr * a.c * fc))};
  for (int64_t i = 0; i < o.r; ++i)
    for (int64_t j = 0; j < o.c; ++j) o.v[size_t(i * o.c + j)] = scale * a.v[size_t((i % a.r) * a.c + (j % a.c))];
  return o;
}

// Rows [begin, end) of a.
Mat row_block(const Mat& a, int64_t begin, int64_t end) {
  return {end - begin, a.c, std::vector<double>(a.v.begin() + begin * a.c, a.v.begin() + end * a.c)};
}
Mat stack(const Mat& a, const Mat& b) {
  Mat o{a.r + b.r, a.c, a.v};
  o.v.insert(o.v.end(), b.v.begin(), b.v.end());
  return o;
}

// Row blocks of `block` rows, in the order `blocks` names them, times scale.
Mat pick_rows(const Mat& a, int64_t block, const std::vector<int64_t>& blocks, double scale) {
  Mat o{int64_t(blocks.size()) * block, a.c, {}};
  o.v.reserve(size_t(o.r * o.c));
  for (int64_t b : blocks)
    for (int64_t i = b * block * a.c; i < (b + 1) * block * a.c; ++i) o.v.push_back(scale * a.v[size_t(i)]);
  return o;
}

// Column blocks of `block` columns, in the order `blocks` names them, times scale.
Mat pick_cols(const Mat& a, int64_t block, const std::vector<int64_t>& blocks, double scale) {
  Mat o{a.r, int64_t(blocks.size()) * block, {}};
  o.v.reserve(size_t(o.r * o.c));
  for (int64_t i = 0; i < a.r; ++i)
    for (int64_t b : blocks)
      for (int64_t j = b * block; j < (b + 1) * block; ++j) o.v.push_back(scale * a.v[size_t(i * a.c + j)]);
  return o;
}

// The per-layer parameter names (suffixes after "layers.{i}.") of a config.
std::vector<std::string> layer_names(const ModelConfig& c) {
  std::vector<std::string> n = {"attn_norm.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight"};
  if (c.qkv_bias) n.insert(n.end(), {"attn.q.bias", "attn.k.bias", "attn.v.bias"});
  if (c.qk_norm) n.insert(n.end(), {"attn.q_norm.weight", "attn.k_norm.weight"});
  if (c.differential()) n.insert(n.end(), {"attn.lambda", "attn.head_norm.weight"});
  n.insert(n.end(), {"attn.o.weight", "mlp_norm.weight", "mlp.gate_up.weight", "mlp.down.weight"});
  if (c.mlp_activation == MlpActivation::PolyNorm) n.push_back("mlp.polynorm");
  return n;
}

}  // namespace

std::vector<int> inserted_layers(const ModelConfig& c, const UpscaleOptions& o) {
  const int L = c.n_layers;
  TEMPER_CHECK(o.depth == 0 || o.insert_after.empty(), "upscale: give --depth or --insert-layers, not both");
  std::vector<int> after = o.insert_after;
  if (o.depth != 0) {
    TEMPER_CHECK(o.depth >= L, "upscale: --depth ", o.depth, " is smaller than the model's ", L,
                 " layers (layers are only added)");
    const int m = o.depth - L;
    for (int k = 0; k < m; ++k) after.push_back(std::min(L - 1, int((int64_t(k) + 1) * L / (m + 1))));
  }
  for (int a : after)
    TEMPER_CHECK(a >= 0 && a < L, "upscale: --insert-layers names layer ", a, ", outside the model's layers 0..",
                 L - 1);
  std::sort(after.begin(), after.end());
  return after;
}

UpscaledModel upscale_model(const ModelConfig& c, const std::map<std::string, Tensor>& ps, const UpscaleOptions& o) {
  c.validate();
  const int64_t f = o.width_factor, hf = o.head_factor > 0 ? o.head_factor : o.width_factor, m = o.signal_head_factor;
  TEMPER_CHECK(f >= 1 && f <= 64, "upscale: --width-factor must be an integer in [1, 64], got ", o.width_factor);
  TEMPER_CHECK(hf >= 1 && hf <= 64, "upscale: --head-factor must be an integer in [1, 64], got ", o.head_factor);
  TEMPER_CHECK(m >= 1 && m <= 64, "upscale: --signal-head-factor must be an integer in [1, 64], got ", m);
  TEMPER_CHECK(m == 1 || c.differential(), "upscale: --signal-head-factor ", m, " needs differential attention; this "
               "model has ", attention_kind_name(c.attention), " attention");
  const bool untie = o.untie_embeddings && c.tie_embeddings;
  const std::vector<int> after = inserted_layers(c, o);
  TEMPER_CHECK(f > 1 || hf > 1 || m > 1 || untie || !after.empty(),
               "upscale: nothing to do (give --width-factor > 1, --head-factor, --signal-head-factor, "
               "--untie-embeddings, --depth or --insert-layers)");
  // every tensor must be one the Decoder of this config has
  std::map<std::string, bool> known = {{"embed", true}, {"final_norm.weight", true}};
  if (!c.tie_embeddings) known["lm_head.weight"] = true;
  for (int l = 0; l < c.n_layers; ++l)
    for (const auto& s : layer_names(c)) known["layers." + std::to_string(l) + "." + s] = true;
  for (const auto& [name, t] : ps)
    TEMPER_CHECK(known.count(name), "upscale: tensor '", name, "' is not part of the ", c.n_layers,
                 "-layer decoder of this config");
  TEMPER_CHECK(!ps.empty(), "upscale: no model tensors");
  const DType dt = ps.begin()->second.dtype();

  const bool tied = c.tie_embeddings && !untie;
  const double s = tied ? 1.0 / std::sqrt(double(f)) : 1.0;
  const int64_t D = c.head_dim, H = c.n_heads, G = c.n_noise_heads;
  UpscaledModel out;
  ModelConfig& n = out.config;
  n = c;
  n.d_model = int(c.d_model * f);
  n.n_heads = int(c.n_heads * hf * m);
  n.n_kv_heads = int(c.n_kv_heads * hf);
  if (c.differential()) {
    n.n_noise_heads = int(G * hf);
    n.attention = n.n_heads == n.n_noise_heads ? AttentionKind::Differential : AttentionKind::GroupedDifferential;
  }
  n.ffn_dim = int(c.ffn_dim * f);
  n.tie_embeddings = tied;
  n.norm_eps = float(double(c.norm_eps) * s * s);
  n.n_layers = c.n_layers + int(after.size());
  auto put = [&](const std::string& name, const Mat& m2, bool vector) { out.params[name] = write(m2, vector, dt); };

  put("embed", tile(read(ps, "embed"), 1, f, s), false);
  put("final_norm.weight", tile(read(ps, "final_norm.weight"), f, 1, s), true);
  if (!tied) put("lm_head.weight", tile(read(ps, untie ? "embed" : "lm_head.weight"), 1, f, 1.0 / double(f)), false);
  // signal-head repetition (differential): q's stripe order and o's 2D column blocks
  std::vector<int64_t> q_order, o_order;
  if (c.differential()) {
    const int64_t r = H / G;
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < m; ++j) q_order.push_back(g * (r + 1) + i);
      q_order.push_back(g * (r + 1) + r);
    }
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < m; ++j) o_order.push_back(h);
  }
  // the widened layers, by original index
  std::vector<std::map<std::string, std::pair<Mat, bool>>> wide(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    auto& w = wide[size_t(l)];
    for (const char* norm : {"attn_norm.weight", "mlp_norm.weight"}) w[norm] = {tile(read(ps, p + norm), f, 1, 1.0), true};
    Mat q = read(ps, p + "attn.q.weight");
    if (c.differential()) q = pick_rows(q, D, q_order, 1.0);
    w["attn.q.weight"] = {tile(q, hf, f, 1.0 / double(f)), false};
    for (const char* kv : {"attn.k.weight", "attn.v.weight"})
      w[kv] = {tile(read(ps, p + kv), hf, f, 1.0 / double(f)), false};
    if (c.qkv_bias)
      for (const char* b : {"attn.q.bias", "attn.k.bias", "attn.v.bias"}) w[b] = {tile(read(ps, p + b), hf, 1, 1.0), true};
    if (c.qk_norm)
      for (const char* qn : {"attn.q_norm.weight", "attn.k_norm.weight"}) w[qn] = {read(ps, p + qn), true};
    if (c.differential()) {
      w["attn.lambda"] = {read(ps, p + "attn.lambda"), false};  // [4, D]: a matrix of 4 rows
      w["attn.head_norm.weight"] = {read(ps, p + "attn.head_norm.weight"), true};
    }
    if (c.mlp_activation == MlpActivation::PolyNorm) w["mlp.polynorm"] = {read(ps, p + "mlp.polynorm"), true};
    Mat wo = read(ps, p + "attn.o.weight");
    if (c.differential()) wo = pick_cols(wo, 2 * D, o_order, 1.0 / double(m));
    w["attn.o.weight"] = {tile(wo, f, hf, s / double(hf)), false};
    w["mlp.down.weight"] = {tile(read(ps, p + "mlp.down.weight"), f, f, s / double(f)), false};
    const Mat gu = read(ps, p + "mlp.gate_up.weight");
    w["mlp.gate_up.weight"] = {stack(tile(row_block(gu, 0, c.ffn_dim), f, f, 1.0 / double(f)),
                                     tile(row_block(gu, c.ffn_dim, 2 * int64_t(c.ffn_dim)), f, f, 1.0 / double(f))),
                               false};
  }
  // the new layer order: each original layer, then its identity copies
  int dst = 0;
  auto emit = [&](int l, bool identity) {
    const std::string p = "layers." + std::to_string(dst++) + ".";
    for (const auto& [name, mv] : wide[size_t(l)]) {
      Mat m = mv.first;
      if (identity && (name == "attn.o.weight" || name == "mlp.down.weight")) std::fill(m.v.begin(), m.v.end(), 0.0);
      put(p + name, m, mv.second);
    }
  };
  size_t next = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    emit(l, false);
    for (; next < after.size() && after[next] == l; ++next) emit(l, true);
  }
  TEMPER_CHECK(dst == n.n_layers, "upscale: internal error, ", dst, " layers written for ", n.n_layers);
  n.validate();
  return out;
}

}  // namespace temper
