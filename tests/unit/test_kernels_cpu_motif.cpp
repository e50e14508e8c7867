// The Motif-architecture CPU ops (kernels.h polynorm_*, diff_attn_combine_*):
// forward against a direct evaluation of the equations, finite-difference
// gradient checks in f64 (objective sum(R * out)), accumulation semantics, the
// reduction of differential attention to plain attention + per-head RMSNorm
// when lambda = 0, and shape errors.
#include "test_kernels_cpu_util.h"

namespace temper::test {
namespace {

constexpr DType F64 = DType::F64;

class CpuMotif : public ::testing::Test {
 protected:
  std::unique_ptr<Kernels> K = make_cpu_kernels();
  Rng rng{77};
};

double rms_inv(const std::vector<double>& z, double eps) {
  double ss = 0;
  for (double v : z) ss += v * v;
  return 1.0 / std::sqrt(ss / double(z.size()) + eps);
}

TEST_F(CpuMotif, PolyNormForwardMatchesEquation) {
  const int64_t N = 3, F = 7;
  const float eps = 1e-6f;
  Tensor gu = rand_tensor({N, 2 * F}, F64, rng), coef = rand_tensor({4}, F64, rng);
  Tensor out = poisoned({N, F}, F64), rstd = poisoned({N, 3}, F64);
  K->polynorm_forward(out, rstd, gu, coef, eps);
  for (int64_t r = 0; r < N; ++r) {
    std::vector<double> p1(F), p2(F), p3(F);
    for (int64_t f = 0; f < F; ++f) {
      const double x = get(gu, r * 2 * F + f);
      p1[size_t(f)] = x;
      p2[size_t(f)] = x * x;
      p3[size_t(f)] = x * x * x;
    }
    const double r1 = rms_inv(p1, eps), r2 = rms_inv(p2, eps), r3 = rms_inv(p3, eps);
    EXPECT_NEAR(get(rstd, 3 * r), r3, 1e-12);
    EXPECT_NEAR(get(rstd, 3 * r + 1), r2, 1e-12);
    EXPECT_NEAR(get(rstd, 3 * r + 2), r1, 1e-12);
    for (int64_t f = 0; f < F; ++f) {
      const double P = get(coef, 0) * p3[size_t(f)] * r3 + get(coef, 1) * p2[size_t(f)] * r2 +
                       get(coef, 2) * p1[size_t(f)] * r1 + get(coef, 3);
      EXPECT_NEAR(get(out, r * F + f), P * get(gu, r * 2 * F + F + f), 1e-12) << r << "," << f;
    }
  }
}

TEST_F(CpuMotif, PolyNormGradients) {
  const Shape gs{2, 3, 10}, os{2, 3, 5};  // 6 rows, F = 5, a leading batch shape
  const float eps = 1e-5f;
  Tensor gu = rand_tensor(gs, F64, rng, 0.2, 1.5), coef = rand_tensor({4}, F64, rng), R = rand_tensor(os, F64, rng);
  auto f = [&] {
    Tensor out = poisoned(os, F64), rstd = poisoned({6, 3}, F64);
    K->polynorm_forward(out, rstd, gu, coef, eps);
    return weighted_sum(R, out);
  };
  Tensor out = poisoned(os, F64), rstd = poisoned({6, 3}, F64);
  K->polynorm_forward(out, rstd, gu, coef, eps);
  Tensor dgu = poisoned(gs, F64), c0 = rand_tensor({4}, F64, rng), dcoef = clone(c0);
  K->polynorm_backward(dgu, dcoef, R, gu, coef, rstd);
  check_grad("polynorm dgu", gu, dgu, f);
  check_grad("polynorm dcoef", coef, diff(dcoef, c0), f);
}

TEST_F(CpuMotif, PolyNormRejectsBadShapes) {
  Tensor gu = rand_tensor({4, 6}, F64, rng), coef = rand_tensor({4}, F64, rng);
  Tensor out = poisoned({4, 3}, F64), rstd = poisoned({4, 3}, F64);
  Tensor bad_out = poisoned({4, 6}, F64), bad_coef = rand_tensor({3}, F64, rng), bad_rstd = poisoned({4}, F64);
  EXPECT_THROW(K->polynorm_forward(bad_out, rstd, gu, coef, 1e-6f), Error);
  EXPECT_THROW(K->polynorm_forward(out, rstd, gu, bad_coef, 1e-6f), Error);
  EXPECT_THROW(K->polynorm_forward(out, bad_rstd, gu, coef, 1e-6f), Error);
  Tensor f32_out = Tensor::empty({4, 3}, DType::F32);
  EXPECT_THROW(K->polynorm_forward(f32_out, rstd, gu, coef, 1e-6f), Error);  // mixed dtypes
}

struct CombineCase {
  int64_t N, H, G, D, Dl;  // D: the combined (value) width, Dl: the lambda vectors' length
};

void PrintTo(const CombineCase& c, std::ostream* os) {
  *os << "N" << c.N << " H" << c.H << " G" << c.G << " D" << c.D << " Dl" << c.Dl;
}

class CpuDiffCombine : public CpuMotif, public ::testing::WithParamInterface<CombineCase> {};

TEST_P(CpuDiffCombine, ForwardAndGradients) {
  const auto [N, H, G, D, Dl] = GetParam();
  const float eps = 1e-6f, lambda_init = 0.35f;
  Tensor a1 = rand_tensor({N, H, D}, F64, rng), a2 = rand_tensor({N, G, D}, F64, rng);
  Tensor lam = rand_tensor({4, Dl}, F64, rng, 0.05, 0.4), w = rand_tensor({D}, F64, rng, 0.5, 1.5);
  Tensor R = rand_tensor({N, H, D}, F64, rng);
  // forward against the equations
  Tensor out = poisoned({N, H, D}, F64), rstd = poisoned({N, H}, F64);
  K->diff_attn_combine_forward(out, rstd, a1, a2, lam, w, lambda_init, eps);
  double d1 = 0, d2 = 0;
  for (int64_t i = 0; i < Dl; ++i) {
    d1 += get(lam, i) * get(lam, Dl + i);
    d2 += get(lam, 2 * Dl + i) * get(lam, 3 * Dl + i);
  }
  const double lambda = std::exp(d1) - std::exp(d2) + lambda_init;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> y(static_cast<size_t>(D));
      for (int64_t i = 0; i < D; ++i)
        y[size_t(i)] = get(a1, (n * H + h) * D + i) - lambda * get(a2, (n * G + h / (H / G)) * D + i);
      const double r = rms_inv(y, eps);
      EXPECT_NEAR(get(rstd, n * H + h), r, 1e-12);
      for (int64_t i = 0; i < D; ++i)
        EXPECT_NEAR(get(out, (n * H + h) * D + i), (1.0 - double(lambda_init)) * get(w, i) * y[size_t(i)] * r, 1e-12);
    }
  auto f = [&] {
    Tensor o = poisoned({N, H, D}, F64), rs = poisoned({N, H}, F64);
    K->diff_attn_combine_forward(o, rs, a1, a2, lam, w, lambda_init, eps);
    return weighted_sum(R, o);
  };
  Tensor da1 = poisoned({N, H, D}, F64), da2 = poisoned({N, G, D}, F64);
  Tensor l0 = rand_tensor({4, Dl}, F64, rng), dlam = clone(l0), w0 = rand_tensor({D}, F64, rng), dw = clone(w0);
  K->diff_attn_combine_backward(da1, da2, dlam, dw, R, a1, a2, lam, w, rstd, lambda_init);
  check_grad("combine da1", a1, da1, f);
  check_grad("combine da2", a2, da2, f);
  check_grad("combine dlam", lam, diff(dlam, l0), f);
  check_grad("combine dweight", w, diff(dw, w0), f);
}

INSTANTIATE_TEST_SUITE_P(Groups, CpuDiffCombine,
                         ::testing::Values(CombineCase{5, 2, 2, 4, 2},   // differential: G = H, 2D-wide values
                                           CombineCase{4, 6, 2, 6, 3},   // GDA 3:1, the released widths
                                           CombineCase{3, 4, 1, 6, 6},   // all signal heads share one noise head
                                           CombineCase{3, 4, 2, 3, 5}),  // lambda longer than the width
                         [](const auto& pi) {
                           return "H" + std::to_string(pi.param.H) + "G" + std::to_string(pi.param.G) + "D" +
                                  std::to_string(pi.param.D) + "L" + std::to_string(pi.param.Dl);
                         });

// lambda forced to 0 (lambda vectors 0 -> exp(0) - exp(0) = 0, lambda_init 0) with
// equal head split: the noise path drops out and the layer is plain causal GQA
// attention followed by a per-head RMSNorm with weight w (scale 1 - 0 = 1).
TEST_F(CpuMotif, DifferentialWithLambdaZeroIsPlainAttentionPlusHeadNorm) {
  const int64_t N = 9, H = 4, KVH = 2, D = 6;
  const float eps = 1e-6f;
  Tensor cu = i32({0, 4, 9});
  Tensor q1 = rand_tensor({N, H, D}, F64, rng), q2 = rand_tensor({N, H, D}, F64, rng);
  Tensor k1 = rand_tensor({N, KVH, D}, F64, rng), k2 = rand_tensor({N, KVH, D}, F64, rng);
  Tensor v = rand_tensor({N, KVH, D}, F64, rng), w = rand_tensor({D}, F64, rng, 0.5, 1.5);
  Tensor lam = Tensor::zeros({4, D}, F64);
  Tensor a1 = poisoned({N, H, D}, F64), lse1 = poisoned({N, H}, F64);
  Tensor a2 = poisoned({N, H, D}, F64), lse2 = poisoned({N, H}, F64);
  K->attention_forward(a1, lse1, q1, k1, v, cu, 5);
  K->attention_forward(a2, lse2, q2, k2, v, cu, 5);
  Tensor out = poisoned({N, H, D}, F64), rstd = poisoned({N, H}, F64);
  K->diff_attn_combine_forward(out, rstd, a1, a2, lam, w, 0.0f, eps);
  // the expected expression, from scratch: softmax(q1 k1^T / sqrt(D)) v per document, then RMSNorm * w
  const int32_t doc_start[] = {0, 0, 0, 0, 4, 4, 4, 4, 4};
  double worst = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kv = h / (H / KVH);
      std::vector<double> s, o(size_t(D), 0.0);
      double mx = -1e300;
      for (int64_t j = doc_start[n]; j <= n; ++j) {
        double dot = 0;
        for (int64_t i = 0; i < D; ++i) dot += get(q1, (n * H + h) * D + i) * get(k1, (j * KVH + kv) * D + i);
        s.push_back(dot / std::sqrt(double(D)));
        mx = std::max(mx, s.back());
      }
      double z = 0;
      for (double& x : s) z += (x = std::exp(x - mx));
      for (int64_t j = doc_start[n]; j <= n; ++j)
        for (int64_t i = 0; i < D; ++i) o[size_t(i)] += s[size_t(j - doc_start[n])] / z * get(v, (j * KVH + kv) * D + i);
      const double r = rms_inv(o, eps);
      for (int64_t i = 0; i < D; ++i)
        worst = std::max(worst, std::fabs(get(out, (n * H + h) * D + i) - o[size_t(i)] * r * get(w, i)));
    }
  EXPECT_LT(worst, 1e-12);
  // and with lambda != 0 the noise path does matter (the check has teeth)
  Tensor lam1 = Tensor::zeros({4, D}, F64), out1 = poisoned({N, H, D}, F64);
  set(lam1, 0, 0.5);
  set(lam1, D, 0.5);  // lambda = exp(0.25) - 1
  K->diff_attn_combine_forward(out1, rstd, a1, a2, lam1, w, 0.0f, eps);
  EXPECT_GT(max_rel_err(out1, out), 1e-3);
}

TEST_F(CpuMotif, CombineRejectsBadShapes) {
  Tensor a1 = rand_tensor({3, 4, 2}, F64, rng), a2 = rand_tensor({3, 3, 2}, F64, rng);  // 4 % 3 != 0
  Tensor lam = rand_tensor({4, 2}, F64, rng), w = rand_tensor({2}, F64, rng);
  Tensor out = poisoned({3, 4, 2}, F64), rstd = poisoned({3, 4}, F64);
  EXPECT_THROW(K->diff_attn_combine_forward(out, rstd, a1, a2, lam, w, 0.2f, 1e-6f), Error);
  Tensor a2ok = rand_tensor({3, 2, 2}, F64, rng), lam_bad = rand_tensor({2, 2}, F64, rng);
  EXPECT_THROW(K->diff_attn_combine_forward(out, rstd, a1, a2ok, lam_bad, w, 0.2f, 1e-6f), Error);
  EXPECT_NO_THROW(K->diff_attn_combine_forward(out, rstd, a1, a2ok, lam, w, 0.2f, 1e-6f));
  Tensor w_bad = rand_tensor({3}, F64, rng);  // the norm weight must match the combined width
  EXPECT_THROW(K->diff_attn_combine_forward(out, rstd, a1, a2ok, lam, w_bad, 0.2f, 1e-6f), Error);
}

}  // namespace
}  // namespace temper::test
