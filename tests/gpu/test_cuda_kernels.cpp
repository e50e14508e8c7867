// CUDA backend vs the f32 CPU oracle: every op on random, never-zero,
// bf16-representable inputs over several shapes (N = 1, 37, 300; C = 64, 96,
// 256 and odd sizes), outputs poisoned with NaN before each run, tolerances
// atol + rtol * |ref| suited to bf16. Accumulated gradients are prefilled and
// compared as (after - before). Without a GPU every test skips.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "gpu_test_util.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32;
constexpr double kRtol = 2e-2;  // bf16 outputs

class CudaKernelsTest : public CudaVsCpuTest {
 protected:
  CudaKernelsTest() : CudaVsCpuTest(2024) {}
  std::vector<int32_t> rand_ids(int64_t n, int64_t below) {
    std::vector<int32_t> v(n);
    for (auto& x : v) x = static_cast<int32_t>(rng.below(below));
    return v;
  }
  // Tolerance scaled to the reference's magnitude (cancellation-prone outputs).
  void close_bf16(const Tensor& got, const Tensor& ref, const std::string& what) {
    expect_close_scaled(got, ref, kRtol, what);
  }
  // Compares the increments of an accumulated gradient.
  void close_delta(const Tensor& got, const Tensor& ref, const Tensor& before, double rtol, const std::string& what) {
    expect_close_delta(got, ref, before, rtol, what);
  }
};

TEST(CudaBackend, BadDeviceIndexThrows) {
  // With or without a GPU a negative index must be a temper::Error, never a crash. An index past
  // the device count is not an error: ranks of a node beyond its GPUs share them round-robin
  // (parallel.device_comm = mpi), so the index wraps.
  EXPECT_THROW(make_cuda_kernels(-1), Error);
}

TEST_F(CudaKernelsTest, IdentityAndAllocatorReuse) {
  EXPECT_EQ(g->device(), Device::CUDA);
  EXPECT_EQ(g->act_dtype(), BF16);
  EXPECT_EQ(g->name(), "cuda");
  void* first = nullptr;
  {
    Tensor t = g->alloc({1000}, F32);
    first = t.raw();
  }
  Tensor again = g->alloc({1000}, F32);  // same bucket: served from the cache
  EXPECT_EQ(again.raw(), first);
}

TEST_F(CudaKernelsTest, CopyConvertsAndZeroes) {
  const int64_t n = 1037;
  Tensor h = Tensor::empty({n}, F32);
  for (int64_t i = 0; i < n; ++i) h.data<float>()[i] = 0.3f + 0.001f * float(i) * (i % 2 ? -1.f : 1.f);
  // host f32 -> device bf16 -> host f32 rounds to nearest even
  Tensor back = host(bf(h));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back.data<float>()[i], round_bf16(h.data<float>()[i])) << i;
  // device f32 -> device bf16 (on-device conversion) and device bf16 -> device f32
  Tensor d32 = f32(h), d16 = poisoned(*g, {n}, BF16), d32b = poisoned(*g, {n}, F32);
  g->copy(d16, d32);
  g->copy(d32b, d16);
  Tensor back2 = host(d32b);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back2.data<float>()[i], round_bf16(h.data<float>()[i])) << i;
  // f64 host -> device f32 -> host f64, device-device same dtype
  Tensor h64 = Tensor::empty({n}, DType::F64);
  for (int64_t i = 0; i < n; ++i) h64.data<double>()[i] = 1.0 / double(i + 3);
  Tensor dd = g->alloc({n}, F32), dd2 = poisoned(*g, {n}, F32);
  g->copy(dd, h64);
  g->copy(dd2, dd);
  Tensor b64 = Tensor::empty({n}, DType::F64);
  g->copy(b64, dd2);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b64.data<double>()[i], double(float(1.0 / double(i + 3)))) << i;
  g->zero(dd2);
  Tensor z = host(dd2);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(z.data<float>()[i], 0.0f);
  Tensor wrong = Tensor::empty({n + 1}, F32);
  EXPECT_THROW(g->copy(wrong, dd), Error);
}

TEST_F(CudaKernelsTest, ArgumentErrors) {
  Tensor x = g->alloc({4, 8}, BF16), w = g->alloc({3, 7}, BF16), out = g->alloc({4, 3}, BF16);
  EXPECT_THROW(g->matmul_forward(out, x, w, nullptr), Error);  // C mismatch
  Tensor xh = Tensor::empty({4, 8}, F32), w2 = g->alloc({3, 8}, BF16);
  EXPECT_THROW(g->matmul_forward(out, xh, w2, nullptr), Error);  // host tensor
  Tensor x32 = g->alloc({4, 8}, F32);
  EXPECT_THROW(g->matmul_forward(out, x32, w2, nullptr), Error);  // wrong dtype
}

TEST_F(CudaKernelsTest, Embedding) {
  for (int64_t N : {1, 37, 300})
    for (int64_t C : {64, 96, 256}) {
      const int64_t V = 50;
      const std::string tag = "N=" + std::to_string(N) + " C=" + std::to_string(C);
      Tensor wte = rand({V, C});
      auto ids = rand_ids(N, V);
      Tensor out = poisoned(*g, {N, C}, BF16), ref = Tensor::empty({N, C}, F32);
      g->embedding_forward(out, i32(ids), bf(wte));
      cpu->embedding_forward(ref, host_i32(ids), wte);
      expect_close(host(out), ref, 0.0, 0.0, "embedding_forward " + tag);

      Tensor dout = rand({N, C}), before = rand({V, C});
      Tensor dw = f32(before), dref = host_clone(before);
      g->embedding_backward(dw, bf(dout), i32(ids));
      cpu->embedding_backward(dref, dout, host_i32(ids));
      close_delta(host(dw), dref, before, 1e-5, "embedding_backward " + tag);
    }
}

TEST_F(CudaKernelsTest, RmsNorm) {
  for (int64_t N : {1, 37, 300})
    for (int64_t C : {64, 96, 256, 1000, 13, 13000}) {  // vectorised, scalar and two-kernel paths
      const std::string tag = "N=" + std::to_string(N) + " C=" + std::to_string(C);
      Tensor x = rand({N, C}), w = rand({C});
      Tensor out = poisoned(*g, {N, C}, BF16), rstd = poisoned(*g, {N}, F32);
      Tensor rout = Tensor::empty({N, C}, F32), rrstd = Tensor::empty({N}, F32);
      g->rmsnorm_forward(out, rstd, bf(x), bf(w), 1e-6f);
      cpu->rmsnorm_forward(rout, rrstd, x, w, 1e-6f);
      expect_close(host(out), rout, 1e-3, kRtol, "rmsnorm out " + tag);
      expect_close(host(rstd), rrstd, 0.0, 1e-4, "rmsnorm rstd " + tag);

      for (bool acc : {false, true}) {
        Tensor dout = rand({N, C}), dx0 = rand({N, C}), dw0 = rand({C});
        Tensor dx = acc ? bf(dx0) : poisoned(*g, {N, C}, BF16), dw = f32(dw0);
        Tensor rdx = host_clone(dx0), rdw = host_clone(dw0);
        g->rmsnorm_backward(dx, acc, dw, bf(dout), bf(x), bf(w), f32(rrstd));
        cpu->rmsnorm_backward(rdx, acc, rdw, dout, x, w, rrstd);
        close_bf16(host(dx), rdx, "rmsnorm dinp " + tag + (acc ? " acc" : ""));
        close_delta(host(dw), rdw, dw0, 1e-3, "rmsnorm dweight " + tag);
      }
    }
}

TEST_F(CudaKernelsTest, Matmul) {
  struct Case {
    Shape in;
    int64_t OC;
  };
  for (const Case& cs :
       {Case{{1, 64}, 96}, Case{{37, 96}, 256}, Case{{300, 256}, 64}, Case{{2, 37, 40}, 19}, Case{{300, 64}, 1}}) {
    const int64_t C = cs.in.back(), rows = shape_numel(cs.in) / C, OC = cs.OC;
    Shape oshape = cs.in;
    oshape.back() = OC;
    const std::string tag = shape_str(cs.in) + " OC=" + std::to_string(OC);
    Tensor x = rand(cs.in), W = rand({OC, C}), b = rand({OC});
    for (bool with_bias : {false, true}) {
      Tensor out = poisoned(*g, oshape, BF16), ref = Tensor::empty(oshape, F32);
      Tensor bd = bf(b);
      g->matmul_forward(out, bf(x), bf(W), with_bias ? &bd : nullptr);
      cpu->matmul_forward(ref, x, W, with_bias ? &b : nullptr);
      close_bf16(host(out), ref, "matmul_forward " + tag + (with_bias ? " bias" : ""));
    }
    for (bool acc : {false, true}) {
      Tensor dout = rand(oshape), dx0 = rand(cs.in), dw0 = rand({OC, C}), db0 = rand({OC});
      Tensor dx = acc ? bf(dx0) : poisoned(*g, cs.in, BF16), dw = f32(dw0), db = f32(db0);
      Tensor rdx = host_clone(dx0), rdw = host_clone(dw0), rdb = host_clone(db0);
      g->matmul_backward(&dx, acc, dw, &db, bf(dout), bf(x), bf(W));
      cpu->matmul_backward(&rdx, acc, rdw, &rdb, dout, x, W);
      close_bf16(host(dx), rdx, "matmul dinp " + tag + (acc ? " acc" : ""));
      close_delta(host(dw), rdw, dw0, 1e-3, "matmul dweight " + tag);
      close_delta(host(db), rdb, db0, 1e-3, "matmul dbias " + tag);
    }
    (void)rows;
  }
  // dinp skipped (null) still accumulates dweight
  Tensor x = rand({5, 64}), W = rand({8, 64}), dout = rand({5, 8}), dw0 = rand({8, 64});
  Tensor dw = f32(dw0), rdw = host_clone(dw0);
  g->matmul_backward(nullptr, false, dw, nullptr, bf(dout), bf(x), bf(W));
  cpu->matmul_backward(nullptr, false, rdw, nullptr, dout, x, W);
  close_delta(host(dw), rdw, dw0, 1e-3, "matmul dweight without dinp");
}

TEST_F(CudaKernelsTest, Rope) {
  for (int64_t N : {1, 37, 300})
    for (int64_t D : {64, 128, 96}) {
      const int64_t H = 3;
      const std::string tag = "N=" + std::to_string(N) + " D=" + std::to_string(D);
      Tensor x = rand({N, H, D});
      auto pos = rand_ids(N, 8192);
      pos[0] = 0;
      for (bool fwd : {true, false}) {
        Tensor d = bf(x), ref = host_clone(x);
        if (fwd) {
          g->rope_forward(d, i32(pos), 1e6f);
          cpu->rope_forward(ref, host_i32(pos), 1e6f);
        } else {
          g->rope_backward(d, i32(pos), 1e4f);
          cpu->rope_backward(ref, host_i32(pos), 1e4f);
        }
        expect_close(host(d), ref, 1e-2, kRtol, std::string(fwd ? "rope_forward " : "rope_backward ") + tag);
      }
    }
}

TEST_F(CudaKernelsTest, SwiGlu) {
  for (int64_t N : {1, 37, 300})
    for (int64_t F : {64, 96, 256, 7}) {
      const std::string tag = "N=" + std::to_string(N) + " F=" + std::to_string(F);
      Tensor gu = host_rand({N, 2 * F}, rng, 0.1, 4.0);
      Tensor out = poisoned(*g, {N, F}, BF16), ref = Tensor::empty({N, F}, F32);
      g->swiglu_forward(out, bf(gu));
      cpu->swiglu_forward(ref, gu);
      expect_close(host(out), ref, 1e-3, kRtol, "swiglu_forward " + tag);
      Tensor dout = rand({N, F});
      Tensor dgu = poisoned(*g, {N, 2 * F}, BF16), rdgu = Tensor::empty({N, 2 * F}, F32);
      g->swiglu_backward(dgu, bf(dout), bf(gu));
      cpu->swiglu_backward(rdgu, dout, gu);
      expect_close(host(dgu), rdgu, 1e-3, kRtol, "swiglu_backward " + tag);
    }
}

TEST_F(CudaKernelsTest, AddAndScale) {
  for (int64_t n : {1, 37, 300 * 96}) {
    Tensor a = rand({n}), b = rand({n});
    Tensor ref = host_clone(a);
    cpu->add_inplace(ref, b);
    Tensor y16 = bf(a), y32 = f32(a), y32b = f32(a);
    g->add_inplace(y16, bf(b));
    g->add_inplace(y32, f32(b));
    g->add_inplace(y32b, bf(b));
    expect_close(host(y16), ref, 1e-3, 1e-2, "add bf16");
    expect_close(host(y32), ref, 0.0, 1e-6, "add f32");
    expect_close(host(y32b), ref, 0.0, 1e-6, "add f32 += bf16");
    Tensor s16 = bf(a), s32 = f32(a), sref = host_clone(a);
    g->scale_inplace(s16, -0.37f);
    g->scale_inplace(s32, -0.37f);
    cpu->scale_inplace(sref, -0.37f);
    expect_close(host(s16), sref, 0.0, 1e-2, "scale bf16");
    expect_close(host(s32), sref, 0.0, 1e-6, "scale f32");
  }
  Tensor y = g->alloc({4}, BF16), x = g->alloc({4}, F32);
  EXPECT_THROW(g->add_inplace(y, x), Error);  // bf16 += f32 is refused
}

TEST_F(CudaKernelsTest, AdamWAndSumSquares) {
  const int64_t n = 10007;
  Tensor p = rand({n}), m = host_rand({n}, rng, 0.0, 0.01), v = host_rand({n}, rng, 1e-6, 1e-4);
  for (int64_t i = 0; i < n; ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);
  Tensor dp = f32(p), dm = f32(m), dv = f32(v);
  Tensor rp = host_clone(p), rm = host_clone(m), rv = host_clone(v);
  for (int64_t step = 1; step <= 3; ++step) {
    Tensor grad = rand({n});
    AdamWParams ap;
    ap.lr = 1e-2f;
    ap.weight_decay = 0.1f;
    ap.step = step;
    ap.grad_scale = 0.5f;
    g->adamw_step(dp, f32(grad), dm, dv, ap);
    cpu->adamw_step(rp, grad, rm, rv, ap);
  }
  expect_close(host(dp), rp, 1e-6, 1e-5, "adamw param");
  expect_close(host(dm), rm, 1e-7, 1e-5, "adamw m");
  expect_close(host(dv), rv, 1e-9, 1e-5, "adamw v");

  for (int64_t k : {1, 37, 300001}) {
    Tensor x = rand({k});
    double ref = 0.0;
    for (int64_t i = 0; i < k; ++i) ref += double(x.data<float>()[i]) * double(x.data<float>()[i]);
    EXPECT_NEAR(g->sum_squares(f32(x)), ref, 1e-9 * ref) << k;
    EXPECT_NEAR(g->sum_squares(bf(x)), ref, 1e-9 * ref) << k;
  }
}

TEST_F(CudaKernelsTest, LmHead) {
  struct Case {
    int64_t N, C, V;
  };
  // The last two cases span two and three equal token chunks (kLmHeadMaxRows =
  // 4096); V % 4 == 0 takes the vector path of the in-place softmax, others the scalar one.
  // Each case twice: the backward's cluster softmax (V % 4 == 0, V >= 1024: the
  // 1000 and 1028 cases) and, with TEMPER_LM_HEAD_CLUSTER=0, the two-pass kernel.
  for (const char* cluster : {"1", "0"})
  for (const Case& cs : {Case{1, 64, 50}, Case{37, 96, 1000}, Case{300, 64, 5003}, Case{4097, 64, 64},
                         Case{8200, 32, 1028}}) {
    setenv("TEMPER_LM_HEAD_CLUSTER", cluster, 1);
    const std::string tag = "N=" + std::to_string(cs.N) + " C=" + std::to_string(cs.C) + " V=" +
                            std::to_string(cs.V) + " cluster=" + cluster;
    Tensor x = rand({cs.N, cs.C}), W = rand({cs.V, cs.C});
    auto tgt = rand_ids(cs.N, cs.V);
    for (int64_t i = 3; i < cs.N; i += 7) tgt[i] = -1;  // ignored positions
    Tensor logp = poisoned(*g, {cs.N}, F32), rlogp = Tensor::empty({cs.N}, F32);
    g->lm_head_logprobs(logp, bf(x), bf(W), i32(tgt));
    cpu->lm_head_logprobs(rlogp, x, W, host_i32(tgt));
    expect_close(host(logp), rlogp, 2e-3, 1e-3, "lm_head logp " + tag);

    Tensor dlogp = rand({cs.N}), dw0 = rand({cs.V, cs.C});
    Tensor logp2 = poisoned(*g, {cs.N}, F32), dx = poisoned(*g, {cs.N, cs.C}, BF16), dw = f32(dw0);
    Tensor rlogp2 = Tensor::empty({cs.N}, F32), rdx = Tensor::empty({cs.N, cs.C}, F32), rdw = host_clone(dw0);
    g->lm_head_logprobs_backward(logp2, &dx, dw, bf(x), bf(W), i32(tgt), f32(dlogp));
    cpu->lm_head_logprobs_backward(rlogp2, &rdx, rdw, x, W, host_i32(tgt), dlogp);
    expect_close(host(logp2), rlogp2, 2e-3, 1e-3, "lm_head backward logp " + tag);
    close_bf16(host(dx), rdx, "lm_head dx " + tag);
    close_delta(host(dw), rdw, dw0, kRtol, "lm_head dW " + tag);
    // Deterministic: the same call again gives the same bits.
    Tensor logp3 = poisoned(*g, {cs.N}, F32), dx3 = poisoned(*g, {cs.N, cs.C}, BF16), dw3 = f32(dw0);
    g->lm_head_logprobs_backward(logp3, &dx3, dw3, bf(x), bf(W), i32(tgt), f32(dlogp));
    EXPECT_EQ(0, std::memcmp(host(dx3).raw(), host(dx).raw(), size_t(cs.N * cs.C) * 4)) << "lm_head dx rerun " << tag;
    EXPECT_EQ(0, std::memcmp(host(dw3).raw(), host(dw).raw(), size_t(cs.V * cs.C) * 4)) << "lm_head dW rerun " << tag;
  }
  unsetenv("TEMPER_LM_HEAD_CLUSTER");
}

struct AttnCase {
  std::vector<int32_t> docs;  // document lengths (0 = empty document)
  int64_t H, KVH, D;
};

TEST_F(CudaKernelsTest, Attention) {
  const std::vector<AttnCase> cases = {
      {{1}, 2, 1, 64},      {{37}, 4, 4, 128},        {{100, 1, 0, 200, 37}, 4, 2, 64},
      {{50, 13}, 2, 1, 40}, {{33, 64, 31}, 6, 3, 96}, {{700, 300}, 8, 2, 128},
  };
  for (const AttnCase& cs : cases) {
    std::vector<int32_t> cu = {0};
    int max_len = 1;
    for (int32_t len : cs.docs) {
      cu.push_back(cu.back() + len);
      max_len = std::max(max_len, int(len));
    }
    const int64_t N = cu.back(), H = cs.H, KVH = cs.KVH, D = cs.D;
    const std::string tag = "N=" + std::to_string(N) + " H=" + std::to_string(H) + " KVH=" + std::to_string(KVH) +
                            " D=" + std::to_string(D);
    Tensor q = rand({N, H, D}), k = rand({N, KVH, D}), v = rand({N, KVH, D});
    Tensor out = poisoned(*g, {N, H, D}, BF16), lse = poisoned(*g, {N, H}, F32);
    Tensor rout = Tensor::empty({N, H, D}, F32), rlse = Tensor::empty({N, H}, F32);
    Tensor cu_d = i32(cu), cu_h = host_i32(cu);
    g->attention_forward(out, lse, bf(q), bf(k), bf(v), cu_d, max_len);
    cpu->attention_forward(rout, rlse, q, k, v, cu_h, max_len);
    expect_close(host(out), rout, 1e-2, kRtol, "attention out " + tag);
    expect_close(host(lse), rlse, 1e-3, 1e-3, "attention lse " + tag);

    // Backward from the same (bf16-rounded) out and lse on both sides.
    Tensor out_b = host_clone(rout);
    for (int64_t i = 0; i < out_b.numel(); ++i) out_b.data<float>()[i] = round_bf16(out_b.data<float>()[i]);
    Tensor dout = rand({N, H, D});
    Tensor dq = poisoned(*g, {N, H, D}, BF16), dk = poisoned(*g, {N, KVH, D}, BF16),
           dv = poisoned(*g, {N, KVH, D}, BF16);
    Tensor rdq = Tensor::empty({N, H, D}, F32), rdk = Tensor::empty({N, KVH, D}, F32),
           rdv = Tensor::empty({N, KVH, D}, F32);
    g->attention_backward(dq, dk, dv, bf(dout), bf(out_b), f32(rlse), bf(q), bf(k), bf(v), cu_d, max_len);
    cpu->attention_backward(rdq, rdk, rdv, dout, out_b, rlse, q, k, v, cu_h, max_len);
    close_bf16(host(dq), rdq, "attention dq " + tag);
    close_bf16(host(dk), rdk, "attention dk " + tag);
    close_bf16(host(dv), rdv, "attention dv " + tag);
  }
}

}  // namespace
}  // namespace temper::gpu_test
