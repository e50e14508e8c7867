// Finite-difference gradient checks (f64, central differences) of every CPU
// kernel with a backward. Objective: sum(R ⊙ out) with random R, so every
// output element contributes; outputs a backward overwrites start as NaN and
// outputs it accumulates into start random, and the increment is checked.
#include "test_kernels_cpu_util.h"

namespace temper::test {
namespace {

constexpr DType F64 = DType::F64;

class CpuGrad : public ::testing::Test {
 protected:
  std::unique_ptr<Kernels> K = make_cpu_kernels();
  Rng rng{1234};
};

TEST_F(CpuGrad, Embedding) {
  const int64_t V = 7, C = 5;
  Tensor tokens = i32({3, 0, 6, 3, 3, 1, 6, 2, 5});  // repeats accumulate
  const int64_t N = tokens.numel();
  Tensor wte = rand_tensor({V, C}, F64, rng), R = rand_tensor({N, C}, F64, rng);
  Tensor g0 = rand_tensor({V, C}, F64, rng), dwte = clone(g0);
  K->embedding_backward(dwte, R, tokens);
  auto f = [&] {
    Tensor out = poisoned({N, C}, F64);
    K->embedding_forward(out, tokens, wte);
    return weighted_sum(R, out);
  };
  check_grad("dwte", wte, diff(dwte, g0), f);
}

TEST_F(CpuGrad, RmsNorm) {
  const Shape s{2, 3, 6};
  const float eps = 1e-5f;
  Tensor x = rand_tensor(s, F64, rng), w = rand_tensor({6}, F64, rng, 0.5, 1.5), R = rand_tensor(s, F64, rng);
  auto f = [&] {
    Tensor out = poisoned(s, F64), rstd = poisoned({6}, F64);
    K->rmsnorm_forward(out, rstd, x, w, eps);
    return weighted_sum(R, out);
  };
  Tensor out = poisoned(s, F64), rstd = poisoned({2, 3}, F64);
  K->rmsnorm_forward(out, rstd, x, w, eps);
  for (int64_t r = 0; r < 6; ++r) {
    double ss = 0;
    for (int c = 0; c < 6; ++c) ss += get(x, r * 6 + c) * get(x, r * 6 + c);
    EXPECT_NEAR(get(rstd, r), 1.0 / std::sqrt(ss / 6 + eps), 1e-12);
  }
  Tensor dx = poisoned(s, F64), w0 = rand_tensor({6}, F64, rng), dw = clone(w0);
  K->rmsnorm_backward(dx, false, dw, R, x, w, rstd);
  check_grad("rmsnorm dinp", x, dx, f);
  check_grad("rmsnorm dweight", w, diff(dw, w0), f);

  // accumulate = true adds the same gradient onto what is there.
  Tensor d0 = rand_tensor(s, F64, rng), dacc = clone(d0), dw2 = clone(w0);
  K->rmsnorm_backward(dacc, true, dw2, R, x, w, rstd);
  EXPECT_LT(max_rel_err(diff(dacc, d0), dx), 1e-12);
}

TEST_F(CpuGrad, Matmul) {
  const int64_t C = 5, OC = 4;
  const Shape in_s{2, 3, C}, out_s{2, 3, OC};  // 6 rows with a leading batch shape
  Tensor x = rand_tensor(in_s, F64, rng), W = rand_tensor({OC, C}, F64, rng), b = rand_tensor({OC}, F64, rng);
  Tensor R = rand_tensor(out_s, F64, rng);
  auto f = [&] {
    Tensor out = poisoned(out_s, F64);
    K->matmul_forward(out, x, W, &b);
    return weighted_sum(R, out);
  };
  Tensor dx = poisoned(in_s, F64), gw0 = rand_tensor({OC, C}, F64, rng), gb0 = rand_tensor({OC}, F64, rng);
  Tensor dW = clone(gw0), db = clone(gb0);
  K->matmul_backward(&dx, false, dW, &db, R, x, W);
  check_grad("matmul dinp", x, dx, f);
  check_grad("matmul dweight", W, diff(dW, gw0), f);
  check_grad("matmul dbias", b, diff(db, gb0), f);

  // accumulate, and the optional outputs left out.
  Tensor d0 = rand_tensor(in_s, F64, rng), dacc = clone(d0), dW2 = clone(gw0);
  K->matmul_backward(&dacc, true, dW2, nullptr, R, x, W);
  EXPECT_LT(max_rel_err(diff(dacc, d0), dx), 1e-12);
  Tensor dW3 = clone(gw0);
  K->matmul_backward(nullptr, false, dW3, nullptr, R, x, W);
  EXPECT_LT(max_rel_err(dW3, dW), 1e-14);
}

TEST_F(CpuGrad, Rope) {
  const Shape s{5, 3, 6};
  Tensor pos = i32({0, 1, 2, 7, 3});
  Tensor x = rand_tensor(s, F64, rng), R = rand_tensor(s, F64, rng);
  auto f = [&] {
    Tensor y = clone(x);
    K->rope_forward(y, pos, 100.0f);
    return weighted_sum(R, y);
  };
  Tensor dx = clone(R);
  K->rope_backward(dx, pos, 100.0f);
  check_grad("rope dx", x, dx, f);
}

struct AttnCase {
  int64_t H, KVH, D;
  std::vector<int32_t> cu;
};

class CpuAttnGrad : public CpuGrad, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(CpuAttnGrad, QKV) {
  const AttnCase& c = GetParam();
  const int64_t N = c.cu.back();
  int max_len = 0;
  for (size_t s = 0; s + 1 < c.cu.size(); ++s) max_len = std::max(max_len, c.cu[s + 1] - c.cu[s]);
  Tensor cu = i32(c.cu);
  Tensor q = rand_tensor({N, c.H, c.D}, F64, rng), k = rand_tensor({N, c.KVH, c.D}, F64, rng);
  Tensor v = rand_tensor({N, c.KVH, c.D}, F64, rng), R = rand_tensor({N, c.H, c.D}, F64, rng);
  auto f = [&] {
    Tensor out = poisoned({N, c.H, c.D}, F64), lse = poisoned({N, c.H}, F64);
    K->attention_forward(out, lse, q, k, v, cu, max_len);
    return weighted_sum(R, out);
  };
  Tensor out = poisoned({N, c.H, c.D}, F64), lse = poisoned({N, c.H}, F64);
  K->attention_forward(out, lse, q, k, v, cu, max_len);
  Tensor dq = poisoned(q.shape(), F64), dk = poisoned(k.shape(), F64), dv = poisoned(v.shape(), F64);
  K->attention_backward(dq, dk, dv, R, out, lse, q, k, v, cu, max_len);
  check_grad("attention dq", q, dq, f);
  check_grad("attention dk", k, dk, f);
  check_grad("attention dv", v, dv, f);
}

INSTANTIATE_TEST_SUITE_P(Docs, CpuAttnGrad,
                         ::testing::Values(AttnCase{4, 2, 5, {0, 3, 4, 9}},      // GQA, a 1-token document
                                           AttnCase{3, 3, 3, {0, 5, 5, 7}},      // MHA, an empty document
                                           AttnCase{4, 1, 4, {0, 1, 2, 6, 11}},  // MQA, two 1-token documents
                                           AttnCase{2, 2, 2, {0, 7}}));          // one document

TEST_F(CpuGrad, SwiGLU) {
  const int64_t N = 4, F = 5;
  Tensor gu = rand_tensor({N, 2 * F}, F64, rng, 0.1, 3.0), R = rand_tensor({N, F}, F64, rng);
  auto f = [&] {
    Tensor out = poisoned({N, F}, F64);
    K->swiglu_forward(out, gu);
    return weighted_sum(R, out);
  };
  Tensor dgu = poisoned({N, 2 * F}, F64);
  K->swiglu_backward(dgu, R, gu);
  check_grad("swiglu dgu", gu, dgu, f);
}

TEST_F(CpuGrad, LmHeadLogprobs) {
  // N crosses the 128-row chunk boundary.
  const int64_t N = 131, C = 3, V = 6;
  std::vector<int32_t> t(N);
  for (int64_t n = 0; n < N; ++n) t[n] = (n % 7 == 3) ? -1 : static_cast<int32_t>(rng.below(V));
  Tensor targets = i32(t);
  Tensor x = rand_tensor({N, C}, F64, rng), W = rand_tensor({V, C}, F64, rng, 0.1, 2.0);
  Tensor dlogp = rand_tensor({N}, F64, rng);  // non-uniform coefficients
  auto f = [&] {
    Tensor logp = poisoned({N}, F64);
    K->lm_head_logprobs(logp, x, W, targets);
    return weighted_sum(dlogp, logp);
  };
  Tensor logp = poisoned({N}, F64), dx = poisoned({N, C}, F64), gw0 = rand_tensor({V, C}, F64, rng);
  Tensor dW = clone(gw0);
  K->lm_head_logprobs_backward(logp, &dx, dW, x, W, targets, dlogp);
  Tensor logp_fwd = poisoned({N}, F64);
  K->lm_head_logprobs(logp_fwd, x, W, targets);
  EXPECT_LT(max_rel_err(logp, logp_fwd), 1e-14);
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] < 0) {
      EXPECT_EQ(get(logp, n), 0.0);
      for (int64_t c = 0; c < C; ++c) EXPECT_EQ(get(dx, n * C + c), 0.0);
    } else {
      EXPECT_LT(get(logp, n), 0.0);
    }
  }
  check_grad("lm_head dx", x, dx, f);
  check_grad("lm_head dW", W, diff(dW, gw0), f);

  // dx = nullptr still accumulates dW.
  Tensor dW2 = clone(gw0);
  K->lm_head_logprobs_backward(logp, nullptr, dW2, x, W, targets, dlogp);
  EXPECT_LT(max_rel_err(dW2, dW), 1e-14);
}

}  // namespace
}  // namespace temper::test
