// CPU kernels: the f32 path against the f64 path for every op, AdamW against
// a hand-computed step, sum_squares, copy with dtype conversion, elementwise
// ops, and the error messages for wrong dtypes, shapes and indices.
#include <string>

#include "core/bf16.h"
#include "test_kernels_cpu_util.h"

namespace temper::test {
namespace {

constexpr DType F32 = DType::F32, F64 = DType::F64;

class CpuMisc : public ::testing::Test {
 protected:
  std::unique_ptr<Kernels> K = make_cpu_kernels();
  Rng rng{7};

  // Runs `op` on f64 copies and on f32 copies of the same inputs (outputs
  // poisoned or copied from `outs`) and checks every output agrees.
  void compare_paths(const char* what, std::vector<Tensor> ins, std::vector<Tensor> outs,
                     const std::function<void(std::vector<Tensor>&, std::vector<Tensor>&)>& op, double tol = 2e-5) {
    std::vector<Tensor> in64, out64, in32, out32;
    for (auto& t : ins) {
      in64.push_back(t.dtype() == F64 ? clone(t) : t);
      in32.push_back(t.dtype() == F64 ? as_dtype(t, F32) : t);
    }
    for (auto& t : outs) {
      out64.push_back(clone(t));
      out32.push_back(as_dtype(t, F32));
    }
    op(in64, out64);
    op(in32, out32);
    for (size_t i = 0; i < outs.size(); ++i) {
      EXPECT_EQ(out32[i].dtype(), F32);
      expect_finite(out32[i], what);
      EXPECT_LT(max_rel_err(out32[i], out64[i], 1e-2), tol) << what << " output " << i;
    }
  }
};

TEST_F(CpuMisc, F32PathMatchesF64Path) {
  const int64_t N = 7, C = 6, V = 5, H = 4, KVH = 2, D = 4;
  Tensor tok = i32({1, 4, 0, 4, 2, 3, 1});
  compare_paths("embedding", {rand_tensor({V, C}, F64, rng), tok, rand_tensor({N, C}, F64, rng)},
                {poisoned({N, C}, F64), rand_tensor({V, C}, F64, rng)}, [&](auto& in, auto& out) {
                  K->embedding_forward(out[0], in[1], in[0]);
                  K->embedding_backward(out[1], in[2], in[1]);
                });
  compare_paths("rmsnorm", {rand_tensor({N, C}, F64, rng), rand_tensor({C}, F64, rng), rand_tensor({N, C}, F64, rng)},
                {poisoned({N, C}, F64), poisoned({N}, F64), poisoned({N, C}, F64), rand_tensor({C}, F64, rng)},
                [&](auto& in, auto& out) {
                  K->rmsnorm_forward(out[0], out[1], in[0], in[1], 1e-5f);
                  K->rmsnorm_backward(out[2], false, out[3], in[2], in[0], in[1], out[1]);
                });
  compare_paths("matmul",
                {rand_tensor({N, C}, F64, rng), rand_tensor({V, C}, F64, rng), rand_tensor({V}, F64, rng),
                 rand_tensor({N, V}, F64, rng)},
                {poisoned({N, V}, F64), poisoned({N, C}, F64), rand_tensor({V, C}, F64, rng), rand_tensor({V}, F64, rng)},
                [&](auto& in, auto& out) {
                  K->matmul_forward(out[0], in[0], in[1], &in[2]);
                  K->matmul_backward(&out[1], false, out[2], &out[3], in[3], in[0], in[1]);
                });
  Tensor pos = i32({0, 3, 9, 2, 40, 5, 6});
  compare_paths("rope", {pos}, {rand_tensor({N, H, D}, F64, rng), rand_tensor({N, H, D}, F64, rng)},
                [&](auto& in, auto& out) {
                  K->rope_forward(out[0], in[0], 10000.0f);
                  K->rope_backward(out[1], in[0], 10000.0f);
                });
  Tensor cu = i32({0, 3, 4, 7});
  compare_paths("attention",
                {rand_tensor({N, H, D}, F64, rng), rand_tensor({N, KVH, D}, F64, rng),
                 rand_tensor({N, KVH, D}, F64, rng), rand_tensor({N, H, D}, F64, rng), cu},
                {poisoned({N, H, D}, F64), poisoned({N, H}, F64), poisoned({N, H, D}, F64), poisoned({N, KVH, D}, F64),
                 poisoned({N, KVH, D}, F64)},
                [&](auto& in, auto& out) {
                  K->attention_forward(out[0], out[1], in[0], in[1], in[2], in[4], 3);
                  K->attention_backward(out[2], out[3], out[4], in[3], out[0], out[1], in[0], in[1], in[2], in[4], 3);
                });
  compare_paths("swiglu", {rand_tensor({N, 2 * C}, F64, rng, 0.1, 3.0), rand_tensor({N, C}, F64, rng)},
                {poisoned({N, C}, F64), poisoned({N, 2 * C}, F64)}, [&](auto& in, auto& out) {
                  K->swiglu_forward(out[0], in[0]);
                  K->swiglu_backward(out[1], in[1], in[0]);
                });
  Tensor tgt = i32({2, -1, 0, 4, 4, 1, -1});
  compare_paths("lm_head",
                {rand_tensor({N, C}, F64, rng), rand_tensor({V, C}, F64, rng), tgt, rand_tensor({N}, F64, rng)},
                {poisoned({N}, F64), poisoned({N}, F64), poisoned({N, C}, F64), rand_tensor({V, C}, F64, rng)},
                [&](auto& in, auto& out) {
                  K->lm_head_logprobs(out[0], in[0], in[1], in[2]);
                  K->lm_head_logprobs_backward(out[1], &out[2], out[3], in[0], in[1], in[2], in[3]);
                });
}

TEST_F(CpuMisc, AdamWHandComputedStep) {
  // lr 0.125, b1 0.75, b2 0.9375, eps 2^-20, wd 0.25, step 3, grad_scale 0.5:
  //   bias corrections 1 - 0.75^3 = 0.578125, 1 - 0.9375^3 = 0.176025390625
  //   element 0: g' = 0.05, m = 0.75*0.01 + 0.25*0.05 = 0.02,
  //              v = 0.9375*0.001 + 0.0625*0.0025 = 0.00109375,
  //              p = 1 - 0.125*(0.02/0.578125 / (sqrt(0.00109375/0.176025390625) + 2^-20) + 0.25*1)
  const double m_want[] = {0.02, -0.01, 0.015};
  const double v_want[] = {0.00109375, 0.0025, 0.00421875};
  const double p_want[] = {0.9138917903729218, -1.9193572781816417, 0.4634255507571894};
  for (DType dt : {F64, F32}) {
    Tensor p = Tensor::empty({3}, dt), g = Tensor::empty({3}, dt), m = Tensor::empty({3}, dt), v = Tensor::empty({3}, dt);
    const double pv[] = {1.0, -2.0, 0.5}, gv[] = {0.1, -0.2, 0.3}, mv[] = {0.01, 0.02, -0.03}, vv[] = {0.001, 0.002, 0.003};
    for (int i = 0; i < 3; ++i) {
      set(p, i, pv[i]);
      set(g, i, gv[i]);
      set(m, i, mv[i]);
      set(v, i, vv[i]);
    }
    AdamWParams ap;
    ap.lr = 0.125f;
    ap.beta1 = 0.75f;
    ap.beta2 = 0.9375f;
    ap.eps = 0x1p-20f;
    ap.weight_decay = 0.25f;
    ap.step = 3;
    ap.grad_scale = 0.5f;
    K->adamw_step(p, g, m, v, ap);
    const double tol = dt == F64 ? 1e-14 : 2e-6;
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(get(m, i), m_want[i], tol * 0.1) << dtype_name(dt) << " m[" << i << "]";
      EXPECT_NEAR(get(v, i), v_want[i], tol * 0.01) << dtype_name(dt) << " v[" << i << "]";
      EXPECT_NEAR(get(p, i), p_want[i], tol) << dtype_name(dt) << " param[" << i << "]";
      EXPECT_EQ(get(g, i), dt == F64 ? gv[i] : double(float(gv[i]))) << "grad is an input";
    }
  }
}

TEST_F(CpuMisc, SumSquares) {
  Tensor a = Tensor::empty({4}, F32), b = Tensor::empty({3}, F64), c = Tensor::empty({2}, DType::BF16);
  const float av[] = {1.5f, -2.0f, 0.25f, 3.0f};
  for (int i = 0; i < 4; ++i) a.data<float>()[i] = av[i];
  for (int i = 0; i < 3; ++i) b.data<double>()[i] = 0.1 * (i + 1);
  c.data<uint16_t>()[0] = float_to_bf16(2.0f);
  c.data<uint16_t>()[1] = float_to_bf16(-0.5f);
  EXPECT_DOUBLE_EQ(K->sum_squares(a), 2.25 + 4.0 + 0.0625 + 9.0);
  EXPECT_NEAR(K->sum_squares(b), 0.01 + 0.04 + 0.09, 1e-16);
  EXPECT_DOUBLE_EQ(K->sum_squares(c), 4.25);
  Tensor big = Tensor::empty({200000}, F32);  // the OpenMP reduction path
  for (int64_t i = 0; i < big.numel(); ++i) big.data<float>()[i] = (i % 2) ? 0.5f : -1.0f;
  EXPECT_DOUBLE_EQ(K->sum_squares(big), 100000 * 1.25);
}

TEST_F(CpuMisc, CopyConverts) {
  Tensor src = Tensor::empty({4}, F64);
  const double vals[] = {1.0, 1.0 + 1.0 / 256, -3.140625, 1e-3};  // 1+2^-8 is a bf16 tie: rounds to even (1.0)
  for (int i = 0; i < 4; ++i) set(src, i, vals[i]);
  Tensor f = poisoned({4}, F32), h = Tensor::empty({2, 2}, DType::BF16), back = poisoned({4}, F64);
  K->copy(f, src);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f.data<float>()[i], static_cast<float>(vals[i]));
  K->copy(h, f);
  EXPECT_EQ(bf16_to_float(h.data<uint16_t>()[0]), 1.0f);
  EXPECT_EQ(bf16_to_float(h.data<uint16_t>()[1]), 1.0f);
  EXPECT_EQ(bf16_to_float(h.data<uint16_t>()[2]), -3.140625f);
  K->copy(back, h);
  EXPECT_NEAR(get(back, 3), 1e-3, 1e-3 / 128);
  EXPECT_NE(get(back, 3), 1e-3);
  Tensor ia = i32({5, -6, 7}), ib = Tensor::empty({3}, DType::I32);
  K->copy(ib, ia);
  EXPECT_EQ(ib.data<int32_t>()[1], -6);
  Tensor wrong = Tensor::empty({5}, F32);
  EXPECT_THROW(K->copy(wrong, src), Error);
  EXPECT_THROW(K->copy(ib, src.rows(0, 3)), Error);  // i32 <- f64 is not a conversion
}

TEST_F(CpuMisc, ElementwiseAndZero) {
  Tensor y = rand_tensor({5}, F32, rng), x = rand_tensor({5}, F32, rng), y0 = clone(y);
  K->add_inplace(y, x);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(get(y, i), float(get(y0, i)) + float(get(x, i)));
  K->scale_inplace(y, -0.5f);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(get(y, i), float(float(get(y0, i)) + float(get(x, i))) * -0.5f);
  Tensor z = poisoned({3, 2}, F64);
  K->zero(z);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(get(z, i), 0.0);
  Tensor a = K->alloc({2, 3}, DType::BF16);
  EXPECT_EQ(a.device(), Device::CPU);
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
}

// The message must contain every fragment.
template <typename F>
void expect_error(F&& f, std::initializer_list<const char*> fragments) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const char* s : fragments) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
  }
}

TEST_F(CpuMisc, ClearErrors) {
  Tensor x32 = rand_tensor({3, 4}, F32, rng), w64 = rand_tensor({4}, F64, rng);
  Tensor out = poisoned({3, 4}, F32), rstd = poisoned({3}, F32);
  expect_error([&] { K->rmsnorm_forward(out, rstd, x32, w64, 1e-5f); }, {"rmsnorm_forward", "'weight'", "f64"});
  Tensor w5 = rand_tensor({5}, F32, rng);
  expect_error([&] { K->rmsnorm_forward(out, rstd, x32, w5, 1e-5f); }, {"rmsnorm_forward", "[3, 4]", "[5]"});
  Tensor W = rand_tensor({2, 5}, F32, rng), mo = poisoned({3, 2}, F32);
  expect_error([&] { K->matmul_forward(mo, x32, W, nullptr); }, {"matmul_forward", "'inp'", "[3, 4]", "[2, 5]"});
  Tensor wte = rand_tensor({4, 2}, F32, rng), eo = poisoned({2, 2}, F32);
  expect_error([&] { K->embedding_forward(eo, i32({1, 4}), wte); }, {"embedding_forward", "tokens[1] = 4"});
  Tensor q = rand_tensor({4, 2, 2}, F32, rng), kv = rand_tensor({4, 1, 2}, F32, rng);
  Tensor ao = poisoned({4, 2, 2}, F32), lse = poisoned({4, 2}, F32);
  expect_error([&] { K->attention_forward(ao, lse, q, kv, kv, i32({0, 3}), 4); }, {"attention_forward", "cu_seqlens"});
  expect_error([&] { K->attention_forward(ao, lse, q, kv, kv, i32({0, 4}), 2); }, {"attention_forward", "max_seqlen"});
  Tensor kv3 = rand_tensor({4, 3, 2}, F32, rng);
  expect_error([&] { K->attention_forward(ao, lse, q, kv3, kv3, i32({0, 4}), 4); }, {"attention_forward", "KVH = 3"});
  Tensor lp = poisoned({3}, F32), lw = rand_tensor({6, 4}, F32, rng);
  expect_error([&] { K->lm_head_logprobs(lp, x32, lw, i32({0, 6, 1})); }, {"lm_head_logprobs", "targets[1] = 6"});
  Tensor r = rand_tensor({4, 2, 3}, F32, rng);
  expect_error([&] { K->rope_forward(r, i32({0, 1, 2, 3}), 1e4f); }, {"rope_forward", "even"});
  Tensor bf = Tensor::empty({3}, DType::BF16);
  expect_error([&] { K->scale_inplace(bf, 2.0f); }, {"scale_inplace", "bf16"});
  AdamWParams ap;
  ap.step = 0;
  Tensor p = rand_tensor({3}, F32, rng), g = clone(p), m = clone(p), v = clone(p);
  expect_error([&] { K->adamw_step(p, g, m, v, ap); }, {"adamw_step", "step"});
}

}  // namespace
}  // namespace temper::test
