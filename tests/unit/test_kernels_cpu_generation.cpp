// CPU generation kernels: kv_cache_write (scatter into [S, T, KVH, D]),
// attention_cached against attention_forward on the same data (GQA, several
// slots of different lengths, prefill and decode shapes, f32 and f64), and
// sample_tokens against a brute-force distribution built here (greedy, ties,
// temperature, top-k, top-p, logp over the full vocabulary, bf16 logits).
#include <algorithm>
#include <map>
#include <numeric>

#include "core/bf16.h"
#include "test_kernels_cpu_util.h"

namespace temper::test {
namespace {

constexpr DType F64 = DType::F64;
constexpr DType F32 = DType::F32;

class CpuGeneration : public ::testing::Test {
 protected:
  std::unique_ptr<Kernels> K = make_cpu_kernels();
  Rng rng{2024};
};

TEST_F(CpuGeneration, KvCacheWriteScattersRowsAndLeavesTheRest) {
  const int64_t S = 3, T = 4, KVH = 2, D = 3, row = KVH * D;
  Tensor kc = poisoned({S, T, KVH, D}, F64), vc = poisoned({S, T, KVH, D}, F64);
  Tensor k = rand_tensor({3, KVH, D}, F64, rng), v = rand_tensor({3, KVH, D}, F64, rng);
  const std::vector<int32_t> slot = {2, 0, 2}, pos = {3, 0, 1};
  K->kv_cache_write(kc, vc, k, v, i32(slot), i32(pos));
  int64_t written = 0;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t t = 0; t < T; ++t) {
      int src = -1;
      for (int n = 0; n < 3; ++n)
        if (slot[size_t(n)] == s && pos[size_t(n)] == t) src = n;
      for (int64_t c = 0; c < row; ++c) {
        const int64_t at = (s * T + t) * row + c;
        if (src < 0) {
          EXPECT_TRUE(std::isnan(get(kc, at)) && std::isnan(get(vc, at))) << "slot " << s << " pos " << t;
        } else {
          EXPECT_EQ(get(kc, at), get(k, src * row + c));
          EXPECT_EQ(get(vc, at), get(v, src * row + c));
          ++written;
        }
      }
    }
  EXPECT_EQ(written, 3 * row);
}

TEST_F(CpuGeneration, KvCacheRejectsBadSlotsAndShapes) {
  Tensor kc = Tensor::zeros({2, 4, 1, 2}, F32), vc = Tensor::zeros({2, 4, 1, 2}, F32);
  Tensor k = Tensor::zeros({1, 1, 2}, F32), v = Tensor::zeros({1, 1, 2}, F32);
  EXPECT_THROW(K->kv_cache_write(kc, vc, k, v, i32({2}), i32({0})), Error);   // slot >= S
  EXPECT_THROW(K->kv_cache_write(kc, vc, k, v, i32({0}), i32({4})), Error);   // pos >= T
  EXPECT_THROW(K->kv_cache_write(kc, vc, k, v, i32({-1}), i32({0})), Error);
  Tensor kbad = Tensor::zeros({1, 2, 2}, F32);
  EXPECT_THROW(K->kv_cache_write(kc, vc, kbad, kbad, i32({0}), i32({0})), Error);
  Tensor k64 = Tensor::zeros({1, 1, 2}, F64);
  EXPECT_THROW(K->kv_cache_write(kc, vc, k64, k64, i32({0}), i32({0})), Error);
  Tensor q = Tensor::zeros({1, 3, 2}, F32), out = Tensor::zeros({1, 3, 2}, F32);
  Tensor kc2 = Tensor::zeros({2, 4, 2, 2}, F32);
  EXPECT_THROW(K->attention_cached(out, q, kc2, kc2, i32({0}), i32({0})), Error);  // H=3 vs KVH=2
}

// Documents of lengths {5, 1, 7} packed for attention_forward; the same k, v
// written into cache slots {2, 0, 3} of a NaN-poisoned cache (unused positions
// and slot 1 must never be read).
void cached_matches_packed(Kernels& K, Rng& rng, DType dt, double tol) {
  const int64_t H = 4, KVH = 2, D = 8, S = 4, T = 9;
  const std::vector<int32_t> lens = {5, 1, 7}, slot_of = {2, 0, 3};
  std::vector<int32_t> cu = {0}, slot, pos;
  for (size_t s = 0; s < lens.size(); ++s) {
    cu.push_back(cu.back() + lens[s]);
    for (int32_t p = 0; p < lens[s]; ++p) {
      slot.push_back(slot_of[s]);
      pos.push_back(p);
    }
  }
  const int64_t N = cu.back();
  Tensor q = rand_tensor({N, H, D}, dt, rng), k = rand_tensor({N, KVH, D}, dt, rng),
         v = rand_tensor({N, KVH, D}, dt, rng);
  Tensor ref = poisoned({N, H, D}, dt), lse = poisoned({N, H}, dt);
  K.attention_forward(ref, lse, q, k, v, i32(cu), 7);

  Tensor kc = poisoned({S, T, KVH, D}, dt), vc = poisoned({S, T, KVH, D}, dt);
  K.kv_cache_write(kc, vc, k, v, i32(slot), i32(pos));
  // Prefill shape: every token at once.
  Tensor out = poisoned({N, H, D}, dt);
  K.attention_cached(out, q, kc, vc, i32(slot), i32(pos));
  EXPECT_LT(max_rel_err(out, ref), tol) << dtype_name(dt) << " prefill";
  // Decode shape: one query per slot, in another order, each the last of its document.
  std::vector<int32_t> dslot, dpos, rows;
  for (int s : {2, 0, 1}) {
    dslot.push_back(slot_of[size_t(s)]);
    dpos.push_back(lens[size_t(s)] - 1);
    rows.push_back(cu[size_t(s) + 1] - 1);
  }
  Tensor qd = Tensor::empty({3, H, D}, dt), outd = poisoned({3, H, D}, dt), refd = Tensor::empty({3, H, D}, dt);
  for (int r = 0; r < 3; ++r)
    for (int64_t c = 0; c < H * D; ++c) {
      set(qd, r * H * D + c, get(q, rows[size_t(r)] * H * D + c));
      set(refd, r * H * D + c, get(ref, rows[size_t(r)] * H * D + c));
    }
  K.attention_cached(outd, qd, kc, vc, i32(dslot), i32(dpos));
  EXPECT_LT(max_rel_err(outd, refd), tol) << dtype_name(dt) << " decode";
}

TEST_F(CpuGeneration, AttentionCachedMatchesAttentionForwardF64) { cached_matches_packed(*K, rng, F64, 1e-12); }
TEST_F(CpuGeneration, AttentionCachedMatchesAttentionForwardF32) { cached_matches_packed(*K, rng, F32, 1e-5); }

TEST_F(CpuGeneration, AttentionCachedSeesOnlyItsPrefix) {
  // A query at position p must ignore later positions even when they are written.
  const int64_t H = 2, KVH = 1, D = 4, T = 6;
  Tensor kc = rand_tensor({1, T, KVH, D}, F64, rng), vc = rand_tensor({1, T, KVH, D}, F64, rng);
  Tensor q = rand_tensor({1, H, D}, F64, rng), a = poisoned({1, H, D}, F64), b = poisoned({1, H, D}, F64);
  K->attention_cached(a, q, kc, vc, i32({0}), i32({2}));
  for (int64_t i = 3 * KVH * D; i < T * KVH * D; ++i) {
    set(kc, i, 100.0);
    set(vc, i, -50.0);
  }
  K->attention_cached(b, q, kc, vc, i32({0}), i32({2}));
  for (int64_t i = 0; i < H * D; ++i) EXPECT_EQ(get(a, i), get(b, i));
  // pos 0: the output is v[0] of its kv head exactly.
  K->attention_cached(a, q, kc, vc, i32({0}), i32({0}));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t c = 0; c < D; ++c) EXPECT_NEAR(get(a, h * D + c), get(vc, c), 1e-15);
}

// ---- sampling ---------------------------------------------------------------

struct RefDist {
  std::vector<int32_t> order;  // kept tokens, descending z, ties by id
  std::vector<double> prob;    // renormalised over the kept tokens, in `order`
  std::vector<double> logp;    // log softmax(z) over all tokens, by id
};

// Written independently of the kernel: sort (z, id) pairs, cut by count, then by
// cumulative probability computed from normalised probabilities.
RefDist reference(const std::vector<double>& logits, double temperature, int top_k, double top_p) {
  const size_t V = logits.size();
  std::vector<std::pair<double, int32_t>> zs;
  for (size_t j = 0; j < V; ++j) zs.push_back({-logits[j] / temperature, int32_t(j)});
  std::sort(zs.begin(), zs.end());  // ascending -z, then ascending id
  double lse = 0, mx = -zs[0].first;
  for (auto& p : zs) lse += std::exp(-p.first - mx);
  lse = mx + std::log(lse);
  RefDist r;
  r.logp.resize(V);
  for (size_t j = 0; j < V; ++j) r.logp[j] = logits[j] / temperature - lse;
  size_t keep = (top_k > 0 && size_t(top_k) < V) ? size_t(top_k) : V;
  double z = 0;
  for (size_t i = 0; i < keep; ++i) z += std::exp(-zs[i].first - mx);
  if (top_p < 1) {
    double cum = 0;
    size_t m = 0;
    while (m < keep && cum < top_p) cum += std::exp(-zs[m++].first - mx) / z;
    keep = std::max<size_t>(m, 1);
  }
  double zk = 0;
  for (size_t i = 0; i < keep; ++i) zk += std::exp(-zs[i].first - mx);
  for (size_t i = 0; i < keep; ++i) {
    r.order.push_back(zs[i].second);
    r.prob.push_back(std::exp(-zs[i].first - mx) / zk);
  }
  return r;
}

// Draws for a stratified grid of u in one call (one row per u); returns tokens and logp.
void draw_grid(Kernels& K, const std::vector<double>& logits, int M, float temperature, int top_k, float top_p,
               std::vector<int32_t>& tok, std::vector<double>& logp, DType logit_dt = F32) {
  const int64_t V = int64_t(logits.size());
  Tensor L = Tensor::empty({M, V}, logit_dt), u = Tensor::empty({M}, F32), t = Tensor::empty({M}, DType::I32),
         lp = poisoned({M}, F64);
  for (int m = 0; m < M; ++m) {
    for (int64_t j = 0; j < V; ++j) {
      if (logit_dt == DType::BF16)
        L.data<uint16_t>()[m * V + j] = float_to_bf16(float(logits[size_t(j)]));
      else
        set(L, m * V + j, logits[size_t(j)]);
    }
    u.data<float>()[m] = float((m + 0.5) / M);
  }
  K.sample_tokens(t, lp, L, u, temperature, top_k, top_p);
  tok.assign(t.data<int32_t>(), t.data<int32_t>() + M);
  logp.assign(lp.data<double>(), lp.data<double>() + M);
}

// The draw for u must be the token whose CDF interval (in descending-z order) holds u,
// and the logp must be the full-vocabulary log-softmax at this temperature.
void expect_matches_reference(Kernels& K, const std::vector<double>& logits, float temperature, int top_k,
                              float top_p) {
  const int M = 2000;
  const RefDist ref = reference(logits, temperature, top_k, top_p);
  std::vector<int32_t> tok;
  std::vector<double> logp;
  draw_grid(K, logits, M, temperature, top_k, top_p, tok, logp);
  std::map<int32_t, int> count;
  for (int m = 0; m < M; ++m) {
    const double u = (m + 0.5) / M;
    double lo = 0;
    int32_t want = -1;
    bool near_edge = false;
    for (size_t i = 0; i < ref.order.size(); ++i) {
      const double hi = lo + ref.prob[i];
      if (std::fabs(u - hi) < 1e-6) near_edge = true;
      if (want < 0 && u < hi) want = ref.order[i];
      lo = hi;
    }
    if (want < 0) want = ref.order.back();
    if (!near_edge) EXPECT_EQ(tok[size_t(m)], want) << "u = " << u << " T=" << temperature << " k=" << top_k
                                                    << " p=" << top_p;
    EXPECT_NEAR(logp[size_t(m)], ref.logp[size_t(tok[size_t(m)])], 1e-6);
    ++count[tok[size_t(m)]];
  }
  for (size_t i = 0; i < ref.order.size(); ++i)
    EXPECT_NEAR(count[ref.order[i]] / double(M), ref.prob[i], 1.5 / M) << "token " << ref.order[i];
  EXPECT_EQ(count.size(), ref.order.size());  // nothing outside the kept set
}

std::vector<double> random_logits(Rng& rng, int V) {
  std::vector<double> l(static_cast<size_t>(V));
  for (double& x : l) x = 3.0 * rng.normal();
  return l;
}

TEST_F(CpuGeneration, SampleMatchesBruteForceDistribution) {
  const std::vector<double> l = random_logits(rng, 37);
  expect_matches_reference(*K, l, 1.0f, 0, 1.0f);    // plain softmax
  expect_matches_reference(*K, l, 0.7f, 0, 1.0f);    // temperature
  expect_matches_reference(*K, l, 2.5f, 0, 1.0f);
  expect_matches_reference(*K, l, 1.0f, 5, 1.0f);    // top-k
  expect_matches_reference(*K, l, 1.0f, 0, 0.8f);    // top-p
  expect_matches_reference(*K, l, 1.3f, 10, 0.9f);   // all three
  expect_matches_reference(*K, l, 1.0f, 1, 1.0f);    // top-k 1 = greedy draw
  expect_matches_reference(*K, l, 1.0f, 100, 1.0f);  // k > V keeps all
}

TEST_F(CpuGeneration, SampleTopPHandWorkedCase) {
  // p = [0.05, 0.5, 0.15, 0.3]: descending order 1, 3, 2, 0.
  std::vector<double> l = {std::log(0.05), std::log(0.5), std::log(0.15), std::log(0.3)};
  std::vector<int32_t> tok;
  std::vector<double> lp;
  draw_grid(*K, l, 80, 1.0f, 0, 0.7f, tok, lp);  // keeps {1, 3}: 0.625 / 0.375
  for (int m = 0; m < 80; ++m) EXPECT_EQ(tok[size_t(m)], (m + 0.5) / 80 < 0.625 ? 1 : 3) << m;
  for (int m = 0; m < 80; ++m) EXPECT_NEAR(lp[size_t(m)], l[size_t(tok[size_t(m)])], 1e-6);  // not renormalised
  draw_grid(*K, l, 100, 1.0f, 0, 0.85f, tok, lp);  // keeps {1, 3, 2}
  EXPECT_EQ(std::count(tok.begin(), tok.end(), 2), 16);  // 0.15/0.95 of 100 stratified draws
  EXPECT_EQ(std::count(tok.begin(), tok.end(), 0), 0);
  draw_grid(*K, l, 10, 1.0f, 0, 0.0f, tok, lp);  // top_p 0 still keeps the best token
  EXPECT_EQ(std::count(tok.begin(), tok.end(), 1), 10);
}

TEST_F(CpuGeneration, GreedyTakesArgmaxLowestIdOnTies) {
  const int64_t V = 6;
  Tensor L = Tensor::empty({3, V}, F32), u = Tensor::zeros({3}, F32), t = Tensor::empty({3}, DType::I32),
         lp = poisoned({3}, F32);
  const double rows[3][6] = {{0.1, 2.0, -1.0, 2.0, 0.0, 1.0}, {5, 5, 5, 5, 5, 5}, {-3, -2, -9, -1, -8, -7}};
  for (int b = 0; b < 3; ++b)
    for (int64_t j = 0; j < V; ++j) set(L, b * V + j, rows[b][j]);
  K->sample_tokens(t, lp, L, u, 0.0f, 0, 1.0f);
  EXPECT_EQ(t.data<int32_t>()[0], 1);
  EXPECT_EQ(t.data<int32_t>()[1], 0);
  EXPECT_EQ(t.data<int32_t>()[2], 3);
  for (int b = 0; b < 3; ++b) {  // logp at temperature 1
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(rows[b][j]);
    EXPECT_NEAR(get(lp, b), rows[b][t.data<int32_t>()[b]] - std::log(s), 1e-6);
  }
  // Sampling with ties: equal logits are walked in id order, so small u gives the lower id.
  std::vector<int32_t> tok;
  std::vector<double> lpv;
  draw_grid(*K, {1.0, 3.0, 0.0, 3.0}, 4, 1.0f, 1, 1.0f, tok, lpv);  // top-1 of a tie keeps id 1
  for (int32_t x : tok) EXPECT_EQ(x, 1);
  const std::vector<double> tie = {0.5, 2.0, 2.0, 2.0};
  expect_matches_reference(*K, tie, 1.0f, 2, 1.0f);  // keeps ids 1, 2 (id 3 cut)
  expect_matches_reference(*K, tie, 1.0f, 0, 1.0f);
}

TEST_F(CpuGeneration, SampleAcceptsBf16LogitsAndF32Logp) {
  const std::vector<double> l = {0.5, -1.25, 2.0, 0.75};  // exact in bf16
  std::vector<int32_t> a, b;
  std::vector<double> la, lb;
  draw_grid(*K, l, 50, 0.9f, 0, 0.95f, a, la, F32);
  draw_grid(*K, l, 50, 0.9f, 0, 0.95f, b, lb, DType::BF16);
  EXPECT_EQ(a, b);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-12);
  // f32 logp, f64 u.
  Tensor L = Tensor::empty({1, 4}, F64), u = Tensor::empty({1}, F64), t = Tensor::empty({1}, DType::I32),
         lp = poisoned({1}, F32);
  for (int j = 0; j < 4; ++j) set(L, j, l[size_t(j)]);
  set(u, 0, 0.999);
  K->sample_tokens(t, lp, L, u, 1.0f, 0, 1.0f);
  EXPECT_EQ(t.data<int32_t>()[0], 1);  // the smallest logit is last in the walk
  EXPECT_TRUE(std::isfinite(get(lp, 0)));
}

TEST_F(CpuGeneration, SampleRejectsBadInputs) {
  Tensor L = Tensor::zeros({2, 3}, F32), u = Tensor::zeros({2}, F32), t = Tensor::empty({2}, DType::I32),
         lp = Tensor::empty({2}, F32);
  set(u, 1, 1.0);  // outside [0, 1)
  EXPECT_THROW(K->sample_tokens(t, lp, L, u, 1.0f, 0, 1.0f), Error);
  set(u, 1, 0.5);
  set(L, 4, std::numeric_limits<double>::quiet_NaN());
  EXPECT_THROW(K->sample_tokens(t, lp, L, u, 1.0f, 0, 1.0f), Error);
  set(L, 4, 0.0);
  Tensor t_short = Tensor::empty({1}, DType::I32);
  EXPECT_THROW(K->sample_tokens(t_short, lp, L, u, 1.0f, 0, 1.0f), Error);
  K->sample_tokens(t, lp, L, u, 1.0f, 0, 1.0f);  // uniform row: u 0 -> id 0, u 0.5 -> id 1
  EXPECT_EQ(t.data<int32_t>()[0], 0);
  EXPECT_EQ(t.data<int32_t>()[1], 1);
  EXPECT_NEAR(get(lp, 0), -std::log(3.0), 1e-6);
}

}  // namespace
}  // namespace temper::test
