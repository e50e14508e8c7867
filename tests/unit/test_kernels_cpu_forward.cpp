// Forward checks of the CPU kernels against naive formulas written out here:
// embedding, rmsnorm, matmul, rope, attention (masked softmax, document
// isolation, GQA), swiglu, lm_head log-probs over several chunks.
#include "test_kernels_cpu_util.h"

namespace temper::test {
namespace {

constexpr DType F64 = DType::F64;

class CpuForward : public ::testing::Test {
 protected:
  std::unique_ptr<Kernels> K = make_cpu_kernels();
  Rng rng{99};
};

TEST_F(CpuForward, BackendIdentity) {
  EXPECT_EQ(K->device(), Device::CPU);
  EXPECT_EQ(K->act_dtype(), DType::F32);
  EXPECT_EQ(K->name(), "cpu");
  EXPECT_EQ(make_kernels("cpu")->name(), "cpu");
}

TEST_F(CpuForward, EmbeddingCopiesRows) {
  Tensor wte = rand_tensor({5, 3}, F64, rng), out = poisoned({4, 3}, F64);
  Tensor tok = i32({4, 0, 4, 2});
  K->embedding_forward(out, tok, wte);
  const int rows[] = {4, 0, 4, 2};
  for (int n = 0; n < 4; ++n)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(get(out, n * 3 + c), get(wte, rows[n] * 3 + c));
}

TEST_F(CpuForward, RmsNormMatchesFormula) {
  const int64_t rows = 3, C = 7;
  Tensor x = rand_tensor({rows, C}, F64, rng), w = rand_tensor({C}, F64, rng);
  Tensor out = poisoned({rows, C}, F64), rstd = poisoned({rows}, F64);
  K->rmsnorm_forward(out, rstd, x, w, 1e-6f);
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += get(x, r * C + c) * get(x, r * C + c) / C;
    const double s = 1.0 / std::sqrt(ms + double(1e-6f));
    for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(get(out, r * C + c), get(x, r * C + c) * s * get(w, c), 1e-14);
  }
}

TEST_F(CpuForward, MatmulMatchesLoops) {
  const int64_t N = 5, C = 4, OC = 3;
  Tensor x = rand_tensor({N, C}, F64, rng), W = rand_tensor({OC, C}, F64, rng), b = rand_tensor({OC}, F64, rng);
  Tensor out = poisoned({N, OC}, F64), outb = poisoned({N, OC}, F64);
  K->matmul_forward(out, x, W, nullptr);
  K->matmul_forward(outb, x, W, &b);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += get(x, n * C + c) * get(W, o * C + c);
      EXPECT_NEAR(get(out, n * OC + o), s, 1e-14);
      EXPECT_NEAR(get(outb, n * OC + o), s + get(b, o), 1e-14);
    }
}

TEST_F(CpuForward, RopeConvention) {
  // D = 4, theta = 10000: pair (0, 2) turns by pos, pair (1, 3) by pos / 100.
  Tensor x = Tensor::empty({2, 1, 4}, F64);
  const double xv[] = {1, 2, 3, 4, 1, 2, 3, 4};
  for (int i = 0; i < 8; ++i) set(x, i, xv[i]);
  K->rope_forward(x, i32({0, 1}), 10000.0f);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(get(x, i), xv[i]) << "position 0 must be the identity";
  const double a0 = 1.0, a1 = 0.01;
  EXPECT_NEAR(get(x, 4), 1 * std::cos(a0) - 3 * std::sin(a0), 1e-12);
  EXPECT_NEAR(get(x, 6), 3 * std::cos(a0) + 1 * std::sin(a0), 1e-12);
  EXPECT_NEAR(get(x, 5), 2 * std::cos(a1) - 4 * std::sin(a1), 1e-12);
  EXPECT_NEAR(get(x, 7), 4 * std::cos(a1) + 2 * std::sin(a1), 1e-12);
}

TEST_F(CpuForward, RopeInverseAndRelativePosition) {
  const Shape s{4, 3, 8};
  Tensor pos = i32({0, 5, 17, 1000});
  Tensor x = rand_tensor(s, F64, rng), y = clone(x);
  K->rope_forward(y, pos, 10000.0f);
  EXPECT_GT(max_rel_err(y, x), 1e-3);  // it did rotate
  K->rope_backward(y, pos, 10000.0f);
  EXPECT_LT(max_rel_err(y, x), 1e-12);
  // q.k after rotation depends only on the position difference.
  Tensor q = rand_tensor({2, 1, 8}, F64, rng), k = rand_tensor({2, 1, 8}, F64, rng);
  auto rotated_dot = [&](int32_t pq, int32_t pk) {
    Tensor a = clone(q), b = clone(k);
    K->rope_forward(a, i32({pq, pq}), 10000.0f);
    K->rope_forward(b, i32({pk, pk}), 10000.0f);
    double d = 0;
    for (int c = 0; c < 8; ++c) d += get(a, c) * get(b, c);
    return d;
  };
  EXPECT_NEAR(rotated_dot(7, 3), rotated_dot(107, 103), 1e-10);
}

// Direct masked softmax over the full N x N score matrix.
void naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int32_t>& cu, Tensor& out,
                     Tensor& lse) {
  const int64_t N = q.dim(0), H = q.dim(1), KVH = k.dim(1), D = q.dim(2);
  std::vector<int> doc(N);
  for (size_t s = 0; s + 1 < cu.size(); ++s)
    for (int32_t t = cu[s]; t < cu[s + 1]; ++t) doc[t] = static_cast<int>(s);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / KVH);
      std::vector<double> p(N, 0.0);
      double z = 0;
      for (int64_t j = 0; j < N; ++j) {
        if (doc[j] != doc[i] || j > i) continue;
        double s = 0;
        for (int64_t c = 0; c < D; ++c) s += get(q, (i * H + h) * D + c) * get(k, (j * KVH + g) * D + c);
        p[j] = std::exp(s / std::sqrt(double(D)));
        z += p[j];
      }
      set(lse, i * H + h, std::log(z));
      for (int64_t c = 0; c < D; ++c) {
        double o = 0;
        for (int64_t j = 0; j < N; ++j) o += p[j] / z * get(v, (j * KVH + g) * D + c);
        set(out, (i * H + h) * D + c, o);
      }
    }
}

TEST_F(CpuForward, AttentionMatchesMaskedSoftmax) {
  const std::vector<int32_t> cu{0, 4, 5, 11};
  const int64_t N = 11, H = 4, KVH = 2, D = 6;
  Tensor q = rand_tensor({N, H, D}, F64, rng, 0.1, 2.0), k = rand_tensor({N, KVH, D}, F64, rng, 0.1, 2.0);
  Tensor v = rand_tensor({N, KVH, D}, F64, rng);
  Tensor out = poisoned({N, H, D}, F64), lse = poisoned({N, H}, F64);
  Tensor ref = poisoned({N, H, D}, F64), ref_lse = poisoned({N, H}, F64);
  K->attention_forward(out, lse, q, k, v, i32(cu), 6);
  naive_attention(q, k, v, cu, ref, ref_lse);
  EXPECT_LT(max_rel_err(out, ref), 1e-12);
  EXPECT_LT(max_rel_err(lse, ref_lse), 1e-12);
  // The 1-token document (token 4) returns its own value row.
  for (int64_t h = 0; h < H; ++h)
    for (int64_t c = 0; c < D; ++c) EXPECT_NEAR(get(out, (4 * H + h) * D + c), get(v, (4 * KVH + h / 2) * D + c), 1e-15);
}

TEST_F(CpuForward, AttentionDocumentsAreIsolated) {
  const std::vector<int32_t> cu{0, 5, 9};
  const int64_t N = 9, H = 2, D = 4;
  Tensor q = rand_tensor({N, H, D}, F64, rng), k = rand_tensor({N, H, D}, F64, rng), v = rand_tensor({N, H, D}, F64, rng);
  Tensor out1 = poisoned({N, H, D}, F64), lse1 = poisoned({N, H}, F64);
  K->attention_forward(out1, lse1, q, k, v, i32(cu), 5);
  // Change every token of document 2 (tokens 5..8): document 1 is untouched.
  Tensor q2 = clone(q), k2 = clone(k), v2 = clone(v);
  for (int64_t i = 5 * H * D; i < N * H * D; ++i) {
    set(q2, i, get(q, i) * -1.7);
    set(k2, i, get(k, i) + 0.3);
    set(v2, i, get(v, i) * 2.0);
  }
  Tensor out2 = poisoned({N, H, D}, F64), lse2 = poisoned({N, H}, F64);
  K->attention_forward(out2, lse2, q2, k2, v2, i32(cu), 5);
  for (int64_t i = 0; i < 5 * H * D; ++i) EXPECT_EQ(get(out1, i), get(out2, i));
  for (int64_t i = 0; i < 5 * H; ++i) EXPECT_EQ(get(lse1, i), get(lse2, i));
  bool changed = false;
  for (int64_t i = 5 * H * D; i < N * H * D; ++i) changed |= get(out1, i) != get(out2, i);
  EXPECT_TRUE(changed);
  // Without the boundary, document 2 would see document 1.
  Tensor out3 = poisoned({N, H, D}, F64), lse3 = poisoned({N, H}, F64);
  K->attention_forward(out3, lse3, q, k, v, i32({0, 9}), 9);
  EXPECT_NE(get(out3, 5 * H * D), get(out1, 5 * H * D));
}

TEST_F(CpuForward, GqaEqualsRepeatedKvHeads) {
  const int64_t N = 6, H = 6, KVH = 2, D = 3;
  const std::vector<int32_t> cu{0, 2, 6};
  Tensor q = rand_tensor({N, H, D}, F64, rng), k = rand_tensor({N, KVH, D}, F64, rng);
  Tensor v = rand_tensor({N, KVH, D}, F64, rng);
  Tensor kr = Tensor::empty({N, H, D}, F64), vr = Tensor::empty({N, H, D}, F64);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < D; ++c) {
        set(kr, (n * H + h) * D + c, get(k, (n * KVH + h / 3) * D + c));
        set(vr, (n * H + h) * D + c, get(v, (n * KVH + h / 3) * D + c));
      }
  Tensor o1 = poisoned({N, H, D}, F64), l1 = poisoned({N, H}, F64);
  Tensor o2 = poisoned({N, H, D}, F64), l2 = poisoned({N, H}, F64);
  K->attention_forward(o1, l1, q, k, v, i32(cu), 4);
  K->attention_forward(o2, l2, q, kr, vr, i32(cu), 4);
  EXPECT_LT(max_rel_err(o1, o2), 1e-14);
  EXPECT_LT(max_rel_err(l1, l2), 1e-14);
}

TEST_F(CpuForward, SwiGLUMatchesFormula) {
  Tensor gu = rand_tensor({2, 6}, F64, rng, 0.1, 4.0), out = poisoned({2, 3}, F64);
  K->swiglu_forward(out, gu);
  for (int r = 0; r < 2; ++r)
    for (int f = 0; f < 3; ++f) {
      const double g = get(gu, r * 6 + f), u = get(gu, r * 6 + 3 + f);
      EXPECT_NEAR(get(out, r * 3 + f), g / (1 + std::exp(-g)) * u, 1e-14);
    }
}

TEST_F(CpuForward, LmHeadMatchesLogSoftmaxOverChunks) {
  const int64_t N = 300, C = 4, V = 9;  // 128 + 128 + 44 rows
  std::vector<int32_t> t(N);
  for (int64_t n = 0; n < N; ++n) t[n] = (n % 11 == 0) ? -1 : static_cast<int32_t>(rng.below(V));
  // Large logits check the max-subtraction.
  Tensor x = rand_tensor({N, C}, F64, rng, 1.0, 30.0), W = rand_tensor({V, C}, F64, rng, 0.5, 3.0);
  Tensor logp = poisoned({N}, F64);
  K->lm_head_logprobs(logp, x, W, i32(t));
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] < 0) {
      EXPECT_EQ(get(logp, n), 0.0);
      continue;
    }
    std::vector<double> z(V);
    double mx = -1e300;
    for (int64_t v = 0; v < V; ++v) {
      z[v] = 0;
      for (int64_t c = 0; c < C; ++c) z[v] += get(x, n * C + c) * get(W, v * C + c);
      mx = std::max(mx, z[v]);
    }
    double s = 0;
    for (double zv : z) s += std::exp(zv - mx);
    EXPECT_NEAR(get(logp, n), z[t[n]] - mx - std::log(s), 1e-10 * (1 + std::fabs(get(logp, n)))) << n;
  }
}

}  // namespace
}  // namespace temper::test
