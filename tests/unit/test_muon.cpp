// Muon: the Newton-Schulz orthogonalisation (singular values follow the
// iteration's polynomial and land in its band), one Muon step against a
// hand-written reference (both Gram forms, Nesterov, AdamW for the rest),
// bad input; the attention_max_logit op against brute force; QK-clip on a
// crafted model (clipped heads reach tau exactly, others keep their logits).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "deck/deck.h"
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "train/muon.h"
#include "train/qk_clip.h"

using namespace temper;

namespace {

using Mat = std::vector<double>;  // row-major

Tensor host_f64(const Mat& v, const Shape& s) {
  Tensor t = Tensor::empty(s, DType::F64);
  std::copy(v.begin(), v.end(), t.data<double>());
  return t;
}
Mat values(const Tensor& t) {
  Mat v(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = t.dtype() == DType::F64 ? t.data<double>()[i] : t.data<float>()[i];
  return v;
}
Mat randn(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d;
  Mat v(n);
  for (auto& x : v) x = d(g);
  return v;
}
// C[m,p] = A[m,k] B[k,p]
Mat mm(const Mat& A, const Mat& B, int64_t m, int64_t k, int64_t p) {
  Mat C(size_t(m * p), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t l = 0; l < k; ++l)
      for (int64_t j = 0; j < p; ++j) C[size_t(i * p + j)] += A[size_t(i * k + l)] * B[size_t(l * p + j)];
  return C;
}
Mat tr(const Mat& A, int64_t m, int64_t n) {
  Mat T(A.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) T[size_t(j * m + i)] = A[size_t(i * n + j)];
  return T;
}
// Eigenvalues of a symmetric n x n matrix (cyclic Jacobi), ascending.
std::vector<double> sym_eigenvalues(Mat A, int64_t n) {
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) off += A[size_t(p * n + q)] * A[size_t(p * n + q)];
    if (off < 1e-30) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = A[size_t(p * n + q)];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (A[size_t(q * n + q)] - A[size_t(p * n + p)]) / (2 * apq);
        const double t = (theta >= 0 ? 1 : -1) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t r = 0; r < n; ++r) {  // columns p, q
          const double arp = A[size_t(r * n + p)], arq = A[size_t(r * n + q)];
          A[size_t(r * n + p)] = c * arp - s * arq;
          A[size_t(r * n + q)] = s * arp + c * arq;
        }
        for (int64_t r = 0; r < n; ++r) {  // rows p, q
          const double apr = A[size_t(p * n + r)], aqr = A[size_t(q * n + r)];
          A[size_t(p * n + r)] = c * apr - s * aqr;
          A[size_t(q * n + r)] = s * apr + c * aqr;
        }
      }
  }
  std::vector<double> e(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i) e[size_t(i)] = A[size_t(i * n + i)];
  std::sort(e.begin(), e.end());
  return e;
}
std::vector<double> singular_values(const Mat& X, int64_t m, int64_t n) {
  const int64_t r = std::min(m, n);
  Mat G = m <= n ? mm(X, tr(X, m, n), m, n, m) : mm(tr(X, m, n), X, n, m, n);
  std::vector<double> e = sym_eigenvalues(G, r);
  for (auto& x : e) x = std::sqrt(std::max(0.0, x));
  return e;
}
// The reference iteration, always in the left form on the wide orientation (explicit transposes).
Mat reference_ns(Mat G, int64_t m, int64_t n, int steps) {
  const bool tall = m > n;
  if (tall) {
    G = tr(G, m, n);
    std::swap(m, n);
  }
  double nrm = 0;
  for (double x : G) nrm += x * x;
  nrm = std::sqrt(nrm);
  for (auto& x : G) x /= nrm + 1e-7;
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  for (int s = 0; s < steps; ++s) {
    Mat A = mm(G, tr(G, m, n), m, n, m), A2 = mm(A, A, m, m, m), B(A.size());
    for (size_t i = 0; i < A.size(); ++i) B[i] = b * A[i] + c * A2[i];
    Mat BX = mm(B, G, m, m, n);
    for (size_t i = 0; i < G.size(); ++i) G[i] = a * G[i] + BX[i];
  }
  return tall ? tr(G, m, n) : G;
}

// vocab 31, d_model 16, ffn 24
ModelConfig tiny_model(int layers, int heads, int kv_heads, int head_dim) {
  ModelConfig c;
  c.vocab_size = 31;
  c.d_model = 16;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.ffn_dim = 24;
  return c;
}

double phi5(double x) {
  for (int i = 0; i < 5; ++i) x = 3.4445 * x - 4.7750 * x * x * x + 2.0315 * x * x * x * x * x;
  return x;
}

}  // namespace

TEST(NewtonSchulz, SingularValuesFollowThePolynomialAndLandInTheBand) {
  auto k = make_cpu_kernels();
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{6, 20}, {24, 5}, {16, 32}, {32, 12}, {8, 8}};
  uint32_t seed = 1;
  for (auto [m, n] : shapes) {
    const Mat g = randn(size_t(m * n), seed++);
    Tensor out = Tensor::empty({m, n}, DType::F64);
    newton_schulz(*k, host_f64(g, {m, n}), out, 5, DType::F64);
    std::vector<double> sin = singular_values(g, m, n), sout = singular_values(values(out), m, n);
    double fro = 0;
    for (double x : g) fro += x * x;
    fro = std::sqrt(fro);
    // each singular value s of G/||G|| maps to phi^5(s) (phi^5 oscillates, so compare sorted sets)
    std::vector<double> want;
    for (double s : sin) want.push_back(phi5(s / (fro + 1e-7)));
    std::sort(want.begin(), want.end());
    for (size_t i = 0; i < sin.size(); ++i) EXPECT_NEAR(sout[i], want[i], 1e-9) << m << "x" << n << " sv " << i;
    if (m != n) {
      // rectangular Gaussian matrices are well conditioned: all values inside the band [0.68, 1.21]
      EXPECT_GE(sin.front() / fro, 3e-3) << m << "x" << n;
      EXPECT_GE(sout.front(), 0.68) << m << "x" << n;
      EXPECT_LE(sout.back(), 1.21) << m << "x" << n;
    }
    // the f32 path (the training dtype) agrees to float precision
    Tensor g32 = Tensor::empty({m, n}, DType::F32), o32 = Tensor::empty({m, n}, DType::F32);
    for (int64_t i = 0; i < m * n; ++i) g32.data<float>()[i] = float(g[size_t(i)]);
    newton_schulz(*k, g32, o32, 5, DType::F32);
    const Mat v32 = values(o32), v64 = values(out);
    for (size_t i = 0; i < v32.size(); ++i) EXPECT_NEAR(v32[i], v64[i], 2e-4);
  }
}

TEST(Muon, StepsMatchAHandWrittenReference) {
  auto k = make_cpu_kernels();
  struct P { std::string name; Shape shape; bool muon; bool decay; };
  const std::vector<P> spec = {{"wide", {3, 5}, true, true}, {"tall", {6, 4}, true, true},
                               {"embed", {7, 3}, false, true}, {"norm", {4}, false, false}};
  MuonConfig cfg;
  cfg.momentum = 0.9;
  cfg.weight_decay = 0.1;
  cfg.update_scale = 0.2;
  cfg.adamw.weight_decay = 0.05;
  std::vector<MuonParam> ps;
  std::vector<Mat> w_ref, m_ref, v_ref, mom_ref;
  uint32_t seed = 10;
  for (const auto& s : spec) {
    const Mat w = randn(size_t(shape_numel(s.shape)), seed++);
    Tensor grad = Tensor::empty(s.shape, DType::F64);
    ps.push_back({{s.name, host_f64(w, s.shape), grad, s.decay}, s.shape, s.muon});
    w_ref.push_back(w);
    m_ref.emplace_back(w.size(), 0.0);
    v_ref.emplace_back(w.size(), 0.0);
    mom_ref.emplace_back(w.size(), 0.0);
  }
  Muon opt(*k, ps, cfg);
  const double lr = 0.02, gs = 0.7;
  for (int t = 1; t <= 3; ++t) {
    for (size_t i = 0; i < spec.size(); ++i) {
      const Mat g = randn(w_ref[i].size(), 100 + uint32_t(10 * t + i));
      std::copy(g.begin(), g.end(), ps[i].ref.grad.data<double>());
      Mat& w = w_ref[i];
      if (spec[i].muon) {
        const int64_t m = spec[i].shape[0], n = spec[i].shape[1];
        Mat u(g.size());
        for (size_t e = 0; e < g.size(); ++e) {
          mom_ref[i][e] = cfg.momentum * mom_ref[i][e] + gs * g[e];
          u[e] = gs * g[e] + cfg.momentum * mom_ref[i][e];
        }
        const Mat o = reference_ns(u, m, n, 5);
        const double scale = 0.2 * std::sqrt(double(std::max(m, n)));
        for (size_t e = 0; e < w.size(); ++e) w[e] = w[e] * (1 - lr * cfg.weight_decay) - lr * scale * o[e];
      } else {
        // AdamW's kernel parameters are floats (AdamWParams): round the constants like it does
        auto f = [](double x) { return double(float(x)); };
        const double wd = spec[i].decay ? f(cfg.adamw.weight_decay) : 0.0, b1 = f(cfg.adamw.beta1),
                     b2 = f(cfg.adamw.beta2);
        for (size_t e = 0; e < w.size(); ++e) {
          const double ge = f(gs) * g[e];
          m_ref[i][e] = b1 * m_ref[i][e] + (1 - b1) * ge;
          v_ref[i][e] = b2 * v_ref[i][e] + (1 - b2) * ge * ge;
          const double mh = m_ref[i][e] / (1 - std::pow(b1, t));
          const double vh = v_ref[i][e] / (1 - std::pow(b2, t));
          w[e] -= f(lr) * (mh / (std::sqrt(vh) + f(cfg.adamw.eps)) + wd * w[e]);
        }
      }
    }
    opt.step(lr, gs);
    for (size_t i = 0; i < spec.size(); ++i) {
      const Mat got = values(ps[i].ref.value);
      for (size_t e = 0; e < got.size(); ++e)
        ASSERT_NEAR(got[e], w_ref[i][e], 1e-12) << spec[i].name << " step " << t << " element " << e;
    }
  }
  EXPECT_EQ(opt.steps_taken(), 3);
  EXPECT_EQ(opt.params().size(), spec.size());
}

TEST(Muon, BadInputIsRefusedWithClearMessages) {
  auto k = make_cpu_kernels();
  auto param = [](const std::string& name, const Shape& s, bool muon) {
    return MuonParam{{name, Tensor::zeros(s, DType::F64), Tensor::zeros(s, DType::F64), true}, s, muon};
  };
  try {
    Muon bad(*k, {param("norm", {4}, true)}, MuonConfig{});
    FAIL() << "muon on a vector was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2-D matrices only"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'norm'"), std::string::npos) << e.what();
  }
  MuonConfig zero_steps;
  zero_steps.ns_steps = 0;
  EXPECT_THROW(Muon(*k, {param("w", {2, 3}, true)}, zero_steps), Error);
  // a slice of the wrong length for the shard count
  MuonParam wrong = param("w", {2, 3}, true);
  wrong.shape = {3, 3};
  EXPECT_THROW(Muon(*k, {wrong}, MuonConfig{}), Error);
  Tensor out = Tensor::empty({4}, DType::F64);
  EXPECT_THROW(newton_schulz(*k, Tensor::zeros({4}, DType::F64), out, 5, DType::F64), Error);
  // the factory's split: embeddings, head and vectors stay with AdamW
  EXPECT_TRUE(muon_eligible("layers.0.attn.q.weight", {8, 8}));
  EXPECT_FALSE(muon_eligible("embed", {97, 8}));
  EXPECT_FALSE(muon_eligible("lm_head.weight", {97, 8}));
  EXPECT_FALSE(muon_eligible("final_norm.weight", {8}));
  EXPECT_FALSE(muon_eligible("layers.0.attn.lambda", {4, 8}));  // differential attention's vectors
  EXPECT_TRUE(muon_eligible("layers.0.attn.q2.weight", {8, 8}));
}

TEST(AttentionMaxLogit, MatchesBruteForceWithGqaAndDocuments) {
  auto k = make_cpu_kernels();
  const int64_t N = 11, H = 4, KVH = 2, D = 6;
  const std::vector<int32_t> cu = {0, 4, 4, 11};  // an empty document in the middle
  const Mat q = randn(size_t(N * H * D), 7), kk = randn(size_t(N * KVH * D), 8);
  Tensor tq = host_f64(q, {N, H, D}), tk = host_f64(kk, {N, KVH, D});
  Tensor tcu = Tensor::empty({int64_t(cu.size())}, DType::I32);
  std::copy(cu.begin(), cu.end(), tcu.data<int32_t>());
  Tensor out = host_f64(Mat(size_t(H), -INFINITY), {H});
  k->attention_max_logit(out, tq, tk, tcu, 7);
  for (int64_t h = 0; h < H; ++h) {
    double best = -INFINITY;
    for (size_t s = 0; s + 1 < cu.size(); ++s)
      for (int64_t i = cu[s]; i < cu[s + 1]; ++i)
        for (int64_t j = cu[s]; j <= i; ++j) {
          double d = 0;
          for (int64_t e = 0; e < D; ++e) d += q[size_t((i * H + h) * D + e)] * kk[size_t((j * KVH + h / 2) * D + e)];
          best = std::max(best, d / std::sqrt(double(D)));
        }
    EXPECT_NEAR(out.data<double>()[h], best, 1e-12) << "head " << h;
  }
  // it accumulates: a larger value already there stays
  Tensor big = host_f64(Mat(size_t(H), 1e6), {H});
  k->attention_max_logit(big, tq, tk, tcu, 7);
  for (int64_t h = 0; h < H; ++h) EXPECT_EQ(big.data<double>()[h], 1e6);
  Tensor wrong = host_f64(Mat(3, 0.0), {3});
  EXPECT_THROW(k->attention_max_logit(wrong, tq, tk, tcu, 7), Error);
}

TEST(QkClip, ClippedHeadsReachTauExactlyAndOthersKeepTheirLogits) {
  auto k = make_cpu_kernels();
  ModelConfig c = tiny_model(2, 4, 2, 4);
  c.qkv_bias = true;
  c.init_std = 0.5;
  Decoder model(c, *k, DType::F64);
  model.init_random(5);
  for (int l = 0; l < c.n_layers; ++l)  // non-zero biases, so their scaling matters
    for (const char* b : {".attn.q.bias", ".attn.k.bias"}) {
      Tensor t = model.param("layers." + std::to_string(l) + b).value;
      const Mat r = randn(size_t(t.numel()), uint32_t(40 + l));
      std::copy(r.begin(), r.end(), t.data<double>());
    }
  model.set_record_max_logits(true);
  Batch b = make_lm_batch(*k, {{1, 5, 9, 3, 7, 2, 8}, {4, 4, 6, 30, 11}}, c.vocab_size);
  Tensor logp;
  auto measure = [&] {
    model.zero_grad();
    model.forward(b, logp);
    return gathered_max_logits(model, *k, nullptr);
  };
  // Clip one layer at a time (a clipped layer changes the input of the layers after it):
  // tau between the layer's head maxima, so that some heads clip and some do not.
  std::vector<std::vector<double>> after;
  for (int L = c.n_layers - 1; L >= 0; --L) {
    auto before = measure();
    std::vector<double> sorted = before[size_t(L)];
    std::sort(sorted.begin(), sorted.end());
    const double tau = 0.5 * (sorted[1] + sorted[2]);
    auto only = before;
    for (int l = 0; l < c.n_layers; ++l)
      if (l != L) std::fill(only[size_t(l)].begin(), only[size_t(l)].end(), -INFINITY);
    const QkClipStats st = qk_clip(model, *k, only, tau);
    EXPECT_EQ(st.heads_clipped, 2);
    EXPECT_EQ(st.max_logit, sorted.back());
    model.refresh_compute();
    after = measure();
    for (int l = 0; l <= L; ++l)
      for (size_t h = 0; h < before[size_t(l)].size(); ++h) {
        const double b0 = before[size_t(l)][h], a0 = after[size_t(l)][h];
        if (l == L && b0 > tau)
          EXPECT_NEAR(a0, tau, 1e-12 * tau) << "layer " << l << " head " << h;
        else
          EXPECT_NEAR(a0, b0, 1e-12 * std::fabs(b0)) << "layer " << l << " head " << h;
      }
  }
  double top = -INFINITY;
  for (const auto& l : after) top = std::max(top, *std::max_element(l.begin(), l.end()));
  // below tau everywhere: nothing changes
  const Mat q0 = values(model.param("layers.0.attn.q.weight").value);
  qk_clip(model, *k, after, top * 2);
  EXPECT_EQ(values(model.param("layers.0.attn.q.weight").value), q0);
  EXPECT_THROW(qk_clip(model, *k, after, 0.0), Error);
}

TEST(QkClip, WithQkNormItMeasuresButChangesNoWeight) {
  auto k = make_cpu_kernels();
  ModelConfig c = tiny_model(1, 2, 1, 8);
  c.qk_norm = true;
  Decoder model(c, *k, DType::F64);
  model.set_record_max_logits(true);
  Batch b = make_lm_batch(*k, {{1, 5, 9, 3, 7, 2}}, c.vocab_size);
  Tensor logp;
  model.zero_grad();
  model.forward(b, logp);
  const auto S = gathered_max_logits(model, *k, nullptr);
  const Mat q0 = values(model.param("layers.0.attn.q.weight").value), k0 = values(model.param("layers.0.attn.k.weight").value);
  const QkClipStats st = qk_clip(model, *k, S, 1e-6);
  EXPECT_EQ(st.heads_clipped, 2);
  EXPECT_EQ(values(model.param("layers.0.attn.q.weight").value), q0);
  EXPECT_EQ(values(model.param("layers.0.attn.k.weight").value), k0);
}

TEST(QkClip, DeckAcceptsItWithSequenceParallelismAndDifferentialAttention) {
  // (tests/mpi/test_ulysses.cpp checks the values: max logits reduced over the SP group, both softmaxes)
  EXPECT_NO_THROW(Deck::defaults({"--parallel.sp=2", "--sft.qk_clip_tau=5"}));
  EXPECT_NO_THROW(Deck::defaults({"--parallel.sp=2", "--sft.qk_clip_tau=5", "--model.n_heads=8",
                                  "--model.n_kv_heads=2", "--model.head_dim=8", "--model.attention=grouped_differential",
                                  "--model.gda_noise_heads=2", "--sft.optimizer=muon"}));
}
