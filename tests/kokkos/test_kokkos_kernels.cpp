// Kokkos backend vs the f32 CPU oracle, op by op: random never-zero inputs over
// several shapes (odd sizes included), outputs poisoned with NaN before each run
// so an element an op forgets to write fails, accumulated gradients prefilled and
// compared as (after - before). Both sides compute in f32 with double
// accumulation, so tolerances are f32-tight (GEMM summation order may differ).
#include <cmath>

#include "gpu/gpu_test_util.h"
#include "kernels/kokkos/kokkos_kernels.h"

namespace temper::gpu_test {
namespace {

constexpr DType F32 = DType::F32;
constexpr double kRtol = 1e-5;

Kernels& kokkos() {
  static std::unique_ptr<Kernels> k = make_kokkos_kernels();
  return *k;
}

class KokkosKernelsTest : public ::testing::Test {
 protected:
  Tensor dev(const Tensor& h) { return to_dev(*g, h, h.dtype() == DType::I32 ? DType::I32 : F32); }
  Tensor i32(const std::vector<int32_t>& v) { return to_dev(*g, host_i32(v), DType::I32); }
  Tensor host(const Tensor& d) { return to_host(*g, d); }
  Tensor rand(const Shape& s) { return host_rand(s, rng); }
  Tensor nan(const Shape& s) { return poisoned(*g, s, F32); }
  std::vector<int32_t> rand_ids(int64_t n, int64_t below) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = static_cast<int32_t>(rng.below(uint64_t(below)));
    return v;
  }
  void close(const Tensor& got, const Tensor& ref, const std::string& what, double rtol = kRtol) {
    expect_close(got, ref, rtol * std::max(max_abs(ref), 1e-6), rtol, what);
  }

  Kernels* g = &kokkos();
  std::unique_ptr<Kernels> cpu = make_cpu_kernels();
  Rng rng{24};
};

TEST_F(KokkosKernelsTest, IdentityAndExecutionSpace) {
  EXPECT_EQ(g->device(), Device::KOKKOS);
  EXPECT_EQ(g->act_dtype(), F32);
  EXPECT_EQ(g->name(), "kokkos");
  EXPECT_FALSE(kokkos_execution_space().empty());
  std::printf("kokkos default execution space: %s\n", kokkos_execution_space().c_str());
}

TEST_F(KokkosKernelsTest, CopyConvertsAndZeroes) {
  const int64_t n = 1037;
  Tensor h = Tensor::empty({n}, F32);
  for (int64_t i = 0; i < n; ++i) h.data<float>()[i] = 0.3f + 0.001f * float(i) * (i % 2 ? -1.f : 1.f);
  // host f32 -> kokkos bf16 -> host f32 rounds to nearest even
  Tensor back = host(to_dev(*g, h, DType::BF16));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back.data<float>()[i], round_bf16(h.data<float>()[i])) << i;
  // on-device conversions f32 -> bf16 -> f32 and f32 -> f64 -> f32
  Tensor d32 = dev(h), d16 = poisoned(*g, {n}, DType::BF16), d32b = nan({n});
  g->copy(d16, d32);
  g->copy(d32b, d16);
  Tensor back2 = host(d32b);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back2.data<float>()[i], round_bf16(h.data<float>()[i])) << i;
  Tensor d64 = g->alloc({n}, DType::F64), d32c = nan({n});
  g->copy(d64, d32);
  g->copy(d32c, d64);
  Tensor back3 = host(d32c);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back3.data<float>()[i], h.data<float>()[i]) << i;
  // host f64 -> kokkos f32 -> host f64; kokkos -> kokkos same dtype
  Tensor h64 = Tensor::empty({n}, DType::F64);
  for (int64_t i = 0; i < n; ++i) h64.data<double>()[i] = 1.0 / double(i + 3);
  Tensor dd = g->alloc({n}, F32), dd2 = nan({n});
  g->copy(dd, h64);
  g->copy(dd2, dd);
  Tensor b64 = Tensor::empty({n}, DType::F64);
  g->copy(b64, dd2);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b64.data<double>()[i], double(float(1.0 / double(i + 3)))) << i;
  // i32 round trip, zero, size mismatch, foreign device
  std::vector<int32_t> ids = rand_ids(77, 1000);
  Tensor hi = host(i32(ids));
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(hi.data<int32_t>()[i], ids[i]);
  g->zero(dd2);
  Tensor z = host(dd2);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(z.data<float>()[i], 0.0f);
  Tensor wrong = Tensor::empty({n + 1}, F32);
  EXPECT_THROW(g->copy(wrong, dd), Error);
  Tensor x = Tensor::empty({4, 8}, F32), w = g->alloc({3, 8}, F32), out = g->alloc({4, 3}, F32);
  EXPECT_THROW(g->matmul_forward(out, x, w, nullptr), Error);  // host tensor passed to an op
}

TEST_F(KokkosKernelsTest, Elementwise) {
  for (int64_t n : {1, 37, 4099}) {
    Tensor y = rand({n}), x = rand({n});
    Tensor dy = dev(y), ry = host_clone(y);
    g->add_inplace(dy, dev(x));
    cpu->add_inplace(ry, x);
    close(host(dy), ry, "add_inplace");
    g->scale_inplace(dy, -0.37f);
    cpu->scale_inplace(ry, -0.37f);
    close(host(dy), ry, "scale_inplace");
    g->axpby(dy, 0.9, dev(x), -1.7);
    cpu->axpby(ry, 0.9, x, -1.7);
    close(host(dy), ry, "axpby");
    Tensor dn = nan({n});
    g->axpby(dn, 0.0, dev(x), 2.5);  // a == 0 ignores y's (NaN) contents
    cpu->axpby(ry, 0.0, x, 2.5);
    close(host(dn), ry, "axpby a=0");
  }
}

TEST_F(KokkosKernelsTest, Embedding) {
  for (int64_t N : {1, 37, 300})
    for (int64_t C : {8, 96}) {
      const int64_t V = 50;
      const std::string tag = "N=" + std::to_string(N) + " C=" + std::to_string(C);
      Tensor wte = rand({V, C});
      auto ids = rand_ids(N, V);
      ids[0] = int32_t(V - 1);
      Tensor out = nan({N, C}), ref = Tensor::empty({N, C}, F32);
      g->embedding_forward(out, i32(ids), dev(wte));
      cpu->embedding_forward(ref, host_i32(ids), wte);
      expect_close(host(out), ref, 0.0, 0.0, "embedding_forward " + tag);

      Tensor dout = rand({N, C}), before = rand({V, C});
      Tensor dw = dev(before), dref = host_clone(before);
      g->embedding_backward(dw, dev(dout), i32(ids));
      cpu->embedding_backward(dref, dout, host_i32(ids));
      expect_close_delta(host(dw), dref, before, kRtol, "embedding_backward " + tag);
    }
  Tensor out = nan({2, 8});
  EXPECT_THROW(g->embedding_forward(out, i32({0, 50}), dev(rand({50, 8}))), Error);  // id outside the table
  EXPECT_THROW(g->embedding_forward(out, i32({0, -1}), dev(rand({50, 8}))), Error);
}

TEST_F(KokkosKernelsTest, RMSNorm) {
  for (int64_t rows : {1, 37, 300})
    for (int64_t C : {8, 97, 256}) {
      const std::string tag = "rows=" + std::to_string(rows) + " C=" + std::to_string(C);
      Tensor x = rand({rows, C}), w = rand({C});
      Tensor out = nan({rows, C}), rstd = nan({rows});
      Tensor rout = Tensor::empty({rows, C}, F32), rrstd = Tensor::empty({rows}, F32);
      g->rmsnorm_forward(out, rstd, dev(x), dev(w), 1e-6f);
      cpu->rmsnorm_forward(rout, rrstd, x, w, 1e-6f);
      close(host(out), rout, "rmsnorm_forward out " + tag);
      close(host(rstd), rrstd, "rmsnorm_forward rstd " + tag);

      for (bool acc : {false, true}) {
        Tensor dout = rand({rows, C}), dx0 = rand({rows, C}), dw0 = rand({C});
        Tensor dx = acc ? dev(dx0) : nan({rows, C}), dw = dev(dw0);
        Tensor rdx = host_clone(dx0), rdw = host_clone(dw0);
        g->rmsnorm_backward(dx, acc, dw, dev(dout), dev(x), dev(w), dev(rrstd));
        cpu->rmsnorm_backward(rdx, acc, rdw, dout, x, w, rrstd);
        close(host(dx), rdx, "rmsnorm_backward dinp " + tag, 1e-4);
        expect_close_delta(host(dw), rdw, dw0, 1e-4, "rmsnorm_backward dweight " + tag);
      }
    }
}

TEST_F(KokkosKernelsTest, Matmul) {
  for (int64_t rows : {1, 37, 130})
    for (auto [C, OC] : {std::pair<int64_t, int64_t>{8, 5}, {96, 64}, {33, 129}})
      for (bool with_bias : {false, true}) {
        const std::string tag = "rows=" + std::to_string(rows) + " C=" + std::to_string(C) +
                                " OC=" + std::to_string(OC) + (with_bias ? " bias" : "");
        Tensor x = rand({rows, C}), w = rand({OC, C}), b = rand({OC});
        Tensor out = nan({rows, OC}), ref = Tensor::empty({rows, OC}, F32);
        Tensor db_dev = dev(b);
        g->matmul_forward(out, dev(x), dev(w), with_bias ? &db_dev : nullptr);
        cpu->matmul_forward(ref, x, w, with_bias ? &b : nullptr);
        close(host(out), ref, "matmul_forward " + tag, 1e-5);

        for (bool acc : {false, true}) {
          Tensor dout = rand({rows, OC}), dx0 = rand({rows, C}), dw0 = rand({OC, C}), dbias0 = rand({OC});
          Tensor dx = acc ? dev(dx0) : nan({rows, C}), dw = dev(dw0), dbias = dev(dbias0);
          Tensor rdx = host_clone(dx0), rdw = host_clone(dw0), rdb = host_clone(dbias0);
          g->matmul_backward(&dx, acc, dw, with_bias ? &dbias : nullptr, dev(dout), dev(x), dev(w));
          cpu->matmul_backward(&rdx, acc, rdw, with_bias ? &rdb : nullptr, dout, x, w);
          close(host(dx), rdx, "matmul_backward dinp " + tag, 1e-5);
          expect_close_delta(host(dw), rdw, dw0, 1e-5, "matmul_backward dweight " + tag);
          if (with_bias) expect_close_delta(host(dbias), rdb, dbias0, 1e-5, "matmul_backward dbias " + tag);
        }
        // dinp skipped (null): only dweight changes
        Tensor dout = rand({rows, OC}), dw0 = rand({OC, C});
        Tensor dw = dev(dw0), rdw = host_clone(dw0);
        g->matmul_backward(nullptr, false, dw, nullptr, dev(dout), dev(x), dev(w));
        cpu->matmul_backward(nullptr, false, rdw, nullptr, dout, x, w);
        expect_close_delta(host(dw), rdw, dw0, 1e-5, "matmul_backward no dinp " + tag);
      }
  Tensor x = g->alloc({4, 8}, F32), w = g->alloc({3, 7}, F32), out = g->alloc({4, 3}, F32);
  EXPECT_THROW(g->matmul_forward(out, x, w, nullptr), Error);  // C mismatch
}

TEST_F(KokkosKernelsTest, Rope) {
  for (int64_t N : {1, 37})
    for (auto [H, D] : {std::pair<int64_t, int64_t>{1, 8}, {3, 64}}) {
      const std::string tag = "N=" + std::to_string(N) + " H=" + std::to_string(H) + " D=" + std::to_string(D);
      std::vector<int32_t> pos(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; ++n) pos[size_t(n)] = int32_t((n * 7) % 1000);
      Tensor x = rand({N, H, D});
      Tensor dx = dev(x), rx = host_clone(x);
      g->rope_forward(dx, i32(pos), 10000.0f);
      cpu->rope_forward(rx, host_i32(pos), 10000.0f);
      close(host(dx), rx, "rope_forward " + tag);
      g->rope_backward(dx, i32(pos), 10000.0f);
      cpu->rope_backward(rx, host_i32(pos), 10000.0f);
      close(host(dx), rx, "rope_backward " + tag);
      close(host(dx), x, "rope_backward inverts rope_forward " + tag, 1e-5);
    }
  Tensor odd = g->alloc({2, 1, 7}, F32);
  EXPECT_THROW(g->rope_forward(odd, i32({0, 1}), 10000.0f), Error);
}

TEST_F(KokkosKernelsTest, SwiGLU) {
  for (int64_t N : {1, 37, 300})
    for (int64_t F : {8, 97}) {
      const std::string tag = "N=" + std::to_string(N) + " F=" + std::to_string(F);
      Tensor gu = host_rand({N, 2 * F}, rng, 0.1, 4.0);
      Tensor out = nan({N, F}), ref = Tensor::empty({N, F}, F32);
      g->swiglu_forward(out, dev(gu));
      cpu->swiglu_forward(ref, gu);
      close(host(out), ref, "swiglu_forward " + tag);
      Tensor dout = rand({N, F});
      Tensor dgu = nan({N, 2 * F}), rdgu = Tensor::empty({N, 2 * F}, F32);
      g->swiglu_backward(dgu, dev(dout), dev(gu));
      cpu->swiglu_backward(rdgu, dout, gu);
      close(host(dgu), rdgu, "swiglu_backward " + tag);
    }
}

TEST_F(KokkosKernelsTest, AdamWAndSumSquares) {
  for (int64_t n : {1, 37, 5000}) {
    Tensor p = rand({n}), gr = rand({n}), m = rand({n}), v = host_rand({n}, rng, 0.01, 0.5);
    for (int64_t i = 0; i < n; ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);  // second moments >= 0
    Tensor dp = dev(p), dm = dev(m), dv = dev(v);
    Tensor rp = host_clone(p), rm = host_clone(m), rv = host_clone(v);
    AdamWParams ap;
    ap.lr = 3e-3f;
    ap.weight_decay = 0.1f;
    ap.step = 7;
    ap.grad_scale = 0.5f;
    for (int it = 0; it < 3; ++it, ++ap.step) {
      g->adamw_step(dp, dev(gr), dm, dv, ap);
      cpu->adamw_step(rp, gr, rm, rv, ap);
    }
    close(host(dp), rp, "adamw param");
    close(host(dm), rm, "adamw m");
    close(host(dv), rv, "adamw v");
    const double want = cpu->sum_squares(gr), got = g->sum_squares(dev(gr));
    EXPECT_NEAR(got, want, 1e-12 * want) << "sum_squares n=" << n;
    const double got_many = g->sum_squares_many({&dp, &dm});
    EXPECT_NEAR(got_many, cpu->sum_squares(rp) + cpu->sum_squares(rm), 1e-4 * got_many);
  }
  AdamWParams bad;
  bad.step = 0;
  Tensor p = g->alloc({3}, F32);
  EXPECT_THROW(g->adamw_step(p, p, p, p, bad), Error);
}

TEST_F(KokkosKernelsTest, LmHeadLogprobs) {
  // N = 300 spans two chunks of the kokkos side (256 rows) and three of the CPU's
  for (int64_t N : {1, 37, 300})
    for (auto [C, V] : {std::pair<int64_t, int64_t>{8, 5}, {64, 301}}) {
      const std::string tag = "N=" + std::to_string(N) + " C=" + std::to_string(C) + " V=" + std::to_string(V);
      Tensor x = rand({N, C}), W = rand({V, C});
      std::vector<int32_t> tg = rand_ids(N, V);
      for (int64_t n = 0; n < N; n += 5) tg[size_t(n)] = -100;  // masked rows
      Tensor logp = nan({N}), rlogp = Tensor::empty({N}, F32);
      g->lm_head_logprobs(logp, dev(x), dev(W), i32(tg));
      cpu->lm_head_logprobs(rlogp, x, W, host_i32(tg));
      close(host(logp), rlogp, "lm_head_logprobs " + tag, 1e-5);

      for (bool with_dx : {false, true}) {
        Tensor dlogp = rand({N}), dW0 = rand({V, C});
        Tensor logp2 = nan({N}), dx = nan({N, C}), dW = dev(dW0);
        Tensor rlogp2 = Tensor::empty({N}, F32), rdx = Tensor::empty({N, C}, F32), rdW = host_clone(dW0);
        g->lm_head_logprobs_backward(logp2, with_dx ? &dx : nullptr, dW, dev(x), dev(W), i32(tg), dev(dlogp));
        cpu->lm_head_logprobs_backward(rlogp2, with_dx ? &rdx : nullptr, rdW, x, W, host_i32(tg), dlogp);
        close(host(logp2), rlogp2, "lm_head_logprobs_backward logp " + tag, 1e-5);
        if (with_dx) close(host(dx), rdx, "lm_head_logprobs_backward dx " + tag, 1e-4);
        expect_close_delta(host(dW), rdW, dW0, 1e-4, "lm_head_logprobs_backward dW " + tag);
      }
    }
  Tensor logp = nan({2});
  EXPECT_THROW(g->lm_head_logprobs(logp, dev(rand({2, 8})), dev(rand({5, 8})), i32({0, 5})), Error);  // target >= V
}

TEST_F(KokkosKernelsTest, AttentionVarlenGqa) {
  struct Case {
    std::vector<int32_t> cu;
    int64_t H, KVH, D;
  };
  // several documents (one of length 1, one empty), MHA and GQA, odd D
  for (const Case& cs : {Case{{0, 7}, 2, 2, 8}, Case{{0, 5, 6, 6, 23, 40}, 4, 2, 16}, Case{{0, 13, 50}, 6, 2, 12}}) {
    const int64_t N = cs.cu.back(), H = cs.H, KVH = cs.KVH, D = cs.D;
    int max_len = 0;
    for (size_t s = 1; s < cs.cu.size(); ++s) max_len = std::max(max_len, cs.cu[s] - cs.cu[s - 1]);
    const std::string tag = "N=" + std::to_string(N) + " H=" + std::to_string(H) + " KVH=" + std::to_string(KVH) +
                            " D=" + std::to_string(D);
    Tensor q = rand({N, H, D}), k = rand({N, KVH, D}), v = rand({N, KVH, D});
    Tensor out = nan({N, H, D}), lse = nan({N, H});
    Tensor rout = Tensor::empty({N, H, D}, F32), rlse = Tensor::empty({N, H}, F32);
    g->attention_forward(out, lse, dev(q), dev(k), dev(v), i32(cs.cu), max_len);
    cpu->attention_forward(rout, rlse, q, k, v, host_i32(cs.cu), max_len);
    close(host(out), rout, "attention_forward out " + tag, 1e-5);
    close(host(lse), rlse, "attention_forward lse " + tag, 1e-5);

    Tensor dout = rand({N, H, D});
    Tensor dq = nan({N, H, D}), dk = nan({N, KVH, D}), dv = nan({N, KVH, D});
    Tensor rdq = Tensor::empty({N, H, D}, F32), rdk = Tensor::empty({N, KVH, D}, F32),
           rdv = Tensor::empty({N, KVH, D}, F32);
    g->attention_backward(dq, dk, dv, dev(dout), dev(rout), dev(rlse), dev(q), dev(k), dev(v), i32(cs.cu), max_len);
    cpu->attention_backward(rdq, rdk, rdv, dout, rout, rlse, q, k, v, host_i32(cs.cu), max_len);
    close(host(dq), rdq, "attention_backward dq " + tag, 1e-4);
    close(host(dk), rdk, "attention_backward dk " + tag, 1e-4);
    close(host(dv), rdv, "attention_backward dv " + tag, 1e-4);

    Tensor start = Tensor::empty({H}, F32);
    for (int64_t h = 0; h < H; ++h) start.data<float>()[h] = h == 0 ? 100.0f : -1e30f;  // head 0 keeps its start
    Tensor ml = dev(start), rml = host_clone(start);
    g->attention_max_logit(ml, dev(q), dev(k), i32(cs.cu), max_len);
    cpu->attention_max_logit(rml, q, k, host_i32(cs.cu), max_len);
    close(host(ml), rml, "attention_max_logit " + tag, 1e-6);
  }
  Tensor t = nan({4, 1, 8}), l = nan({4, 1});
  EXPECT_THROW(g->attention_forward(t, l, t, t, t, i32({0, 3}), 4), Error);        // cu_seqlens does not end at N
  EXPECT_THROW(g->attention_forward(t, l, t, t, t, i32({0, 4}), 3), Error);        // document longer than max_seqlen
  EXPECT_THROW(g->attention_forward(t, l, t, t, t, i32({0, 3, 2, 4}), 4), Error);  // decreasing
}

TEST_F(KokkosKernelsTest, PolyNorm) {
  for (int64_t N : {1, 37})
    for (int64_t F : {8, 97}) {
      const std::string tag = "N=" + std::to_string(N) + " F=" + std::to_string(F);
      Tensor gu = rand({N, 2 * F}), coef = rand({4});
      Tensor out = nan({N, F}), rstd = nan({N, 3});
      Tensor rout = Tensor::empty({N, F}, F32), rrstd = Tensor::empty({N, 3}, F32);
      g->polynorm_forward(out, rstd, dev(gu), dev(coef), 1e-6f);
      cpu->polynorm_forward(rout, rrstd, gu, coef, 1e-6f);
      close(host(out), rout, "polynorm_forward out " + tag);
      close(host(rstd), rrstd, "polynorm_forward rstd " + tag);
      Tensor dout = rand({N, F}), dc0 = rand({4});
      Tensor dgu = nan({N, 2 * F}), dc = dev(dc0);
      Tensor rdgu = Tensor::empty({N, 2 * F}, F32), rdc = host_clone(dc0);
      g->polynorm_backward(dgu, dc, dev(dout), dev(gu), dev(coef), dev(rrstd));
      cpu->polynorm_backward(rdgu, rdc, dout, gu, coef, rrstd);
      close(host(dgu), rdgu, "polynorm_backward dgu " + tag, 1e-4);
      expect_close_delta(host(dc), rdc, dc0, 1e-4, "polynorm_backward dcoef " + tag);
    }
}

TEST_F(KokkosKernelsTest, DiffAttnCombine) {
  struct Case {
    int64_t N, H, G, D, Dl;
  };
  for (const Case& c : {Case{1, 2, 1, 8, 4}, Case{37, 6, 2, 16, 8}, Case{5, 4, 4, 12, 6}}) {
    const std::string tag = "N=" + std::to_string(c.N) + " H=" + std::to_string(c.H) + " G=" + std::to_string(c.G);
    const double lambda_init = 0.35;
    Tensor a1 = rand({c.N, c.H, c.D}), a2 = rand({c.N, c.G, c.D});
    Tensor lam = host_rand({4, c.Dl}, rng, 0.0, 0.1), w = host_rand({c.D}, rng, 0.5, 1.5);
    Tensor out = nan({c.N, c.H, c.D}), rstd = nan({c.N, c.H});
    Tensor rout = Tensor::empty({c.N, c.H, c.D}, F32), rrstd = Tensor::empty({c.N, c.H}, F32);
    g->diff_attn_combine_forward(out, rstd, dev(a1), dev(a2), dev(lam), dev(w), lambda_init, 1e-6f);
    cpu->diff_attn_combine_forward(rout, rrstd, a1, a2, lam, w, lambda_init, 1e-6f);
    close(host(out), rout, "combine out " + tag);
    close(host(rstd), rrstd, "combine rstd " + tag);
    Tensor dout = rand({c.N, c.H, c.D}), l0 = rand({4, c.Dl}), w0 = rand({c.D});
    Tensor da1 = nan({c.N, c.H, c.D}), da2 = nan({c.N, c.G, c.D}), dlam = dev(l0), dw = dev(w0);
    Tensor rda1 = Tensor::empty({c.N, c.H, c.D}, F32), rda2 = Tensor::empty({c.N, c.G, c.D}, F32);
    Tensor rdlam = host_clone(l0), rdw = host_clone(w0);
    g->diff_attn_combine_backward(da1, da2, dlam, dw, dev(dout), dev(a1), dev(a2), dev(lam), dev(w), dev(rrstd),
                                  lambda_init);
    cpu->diff_attn_combine_backward(rda1, rda2, rdlam, rdw, dout, a1, a2, lam, w, rrstd, lambda_init);
    close(host(da1), rda1, "combine da1 " + tag, 1e-4);
    close(host(da2), rda2, "combine da2 " + tag, 1e-4);
    expect_close_delta(host(dlam), rdlam, l0, 1e-4, "combine dlam " + tag);
    expect_close_delta(host(dw), rdw, w0, 1e-4, "combine dweight " + tag);
  }
}

TEST_F(KokkosKernelsTest, KvCacheAndCachedAttention) {
  const int64_t S = 3, T = 20, KVH = 2, H = 4, D = 16;
  Tensor kc0 = rand({S, T, KVH, D}), vc0 = rand({S, T, KVH, D});
  Tensor kc = dev(kc0), vc = dev(vc0), rkc = host_clone(kc0), rvc = host_clone(vc0);
  // a prefill of 7 tokens into slot 1 and decode tokens of slots 0 and 2
  const std::vector<int32_t> slot = {1, 1, 1, 1, 1, 1, 1, 0, 2}, pos = {0, 1, 2, 3, 4, 5, 6, 11, 19};
  const int64_t N = int64_t(slot.size());
  Tensor k = rand({N, KVH, D}), v = rand({N, KVH, D});
  g->kv_cache_write(kc, vc, dev(k), dev(v), i32(slot), i32(pos));
  cpu->kv_cache_write(rkc, rvc, k, v, host_i32(slot), host_i32(pos));
  expect_close(host(kc), rkc, 0.0, 0.0, "kv_cache_write k");
  expect_close(host(vc), rvc, 0.0, 0.0, "kv_cache_write v");
  Tensor q = rand({N, H, D});
  Tensor out = nan({N, H, D}), rout = Tensor::empty({N, H, D}, F32);
  g->attention_cached(out, dev(q), kc, vc, i32(slot), i32(pos));
  cpu->attention_cached(rout, q, rkc, rvc, host_i32(slot), host_i32(pos));
  close(host(out), rout, "attention_cached", 1e-5);
  EXPECT_THROW(g->kv_cache_write(kc, vc, dev(k), dev(v), i32(std::vector<int32_t>(size_t(N), 3)), i32(pos)), Error);
  EXPECT_THROW(g->attention_cached(out, dev(q), kc, vc, i32(slot), i32(std::vector<int32_t>(size_t(N), 20))), Error);
}

TEST_F(KokkosKernelsTest, SampleTokens) {
  const int64_t B = 5, V = 300;
  Tensor logits = host_rand({B, V}, rng, 0.0, 6.0), hu = Tensor::empty({B}, F32);
  for (int64_t b = 0; b < B; ++b) hu.data<float>()[b] = float(rng.uniform());
  struct Mode {
    float temperature;
    int top_k;
    float top_p;
  };
  for (const Mode& m : {Mode{0.0f, 0, 1.0f}, Mode{1.0f, 0, 1.0f}, Mode{0.7f, 20, 1.0f}, Mode{1.3f, 0, 0.8f},
                        Mode{0.9f, 50, 0.9f}}) {
    Tensor tok = g->alloc({B}, DType::I32), lp = nan({B});
    Tensor rtok = Tensor::empty({B}, DType::I32), rlp = Tensor::empty({B}, F32);
    g->sample_tokens(tok, lp, dev(logits), dev(hu), m.temperature, m.top_k, m.top_p);
    cpu->sample_tokens(rtok, rlp, logits, hu, m.temperature, m.top_k, m.top_p);
    Tensor ht = host(tok);
    for (int64_t b = 0; b < B; ++b) EXPECT_EQ(ht.data<int32_t>()[b], rtok.data<int32_t>()[b]) << "row " << b;
    close(host(lp), rlp, "sample_tokens logp");
  }
}

// mask_logits_from in place on the device equals the host-memory default of the CPU
// backend, element for element (-inf included), in every dtype it masks.
TEST_F(KokkosKernelsTest, MaskLogitsFrom) {
  const int64_t B = 3, V = 300;
  const Tensor x = rand({B, V});  // bf16-representable: exact in f32, f64 and bf16
  for (DType dt : {F32, DType::F64, DType::BF16})
    for (int64_t first : {-3, 0, 7, 299, 300, 400}) {
      Tensor ref = host_clone(x);
      cpu->mask_logits_from(ref, first);
      Tensor d = to_dev(*g, x, dt);
      g->mask_logits_from(d, first);
      const Tensor got = host(d);
      for (int64_t i = 0; i < x.numel(); ++i)
        ASSERT_EQ(got.data<float>()[i], ref.data<float>()[i]) << dtype_name(dt) << " first " << first << " at " << i;
    }
}

}  // namespace
}  // namespace temper::gpu_test
