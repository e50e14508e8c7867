// The small-batch forward GEMMs (kernels/cuda/gemm_lt.h: cublasLt by a fixed
// rule, the bias in the epilogue, split-K on request) against the CPU twin: the decode
// step's weight GEMMs of the Qwen2-1.5B shape (packed qkv with its bias, o,
// gate_up, down) and odd shapes at M = 1, 3, 64, 256, 1024 rows, bf16 outputs
// through matmul_forward (with and without bias) and f32 outputs through gemm;
// every split of a few problems forced through gemm_lt directly; each result
// repeats bit for bit, and a recorded graph gives the eager result.
#include <cstring>

#include "gpu_test_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemm_lt.h"

namespace temper::gpu_test {
namespace {

namespace lt = temper::cuda::gemm_lt;
constexpr DType BF16 = DType::BF16, F32 = DType::F32;

class CudaGemmDecodeTest : public CudaVsCpuTest {
 protected:
  CudaGemmDecodeTest() : CudaVsCpuTest(4520) {}
  CudaKernels& cu() { return dynamic_cast<CudaKernels&>(*g); }
  int sms() {
    int dev = 0, n = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n;
  }
  // which path the backend takes for out[M, N] = x[M, K] W[N, K]^T
  std::string path(const Tensor& x, const Tensor& W, const Tensor& out, const Tensor* bias, bool f32_out) {
    lt::Problem p;
    const int64_t M = x.dim(0), N = W.dim(0), K = W.dim(1);
    if (!lt::make_problem(M, N, K, f32_out, bias != nullptr, x.raw(), K, W.raw(), K, out.raw(), N,
                          bias ? bias->raw() : nullptr, &p))
      return "cublasGemmEx (unaligned)";
    int dev = 0;
    cudaGetDevice(&dev);
    const lt::Plan* plan = lt::plan_for(p, dev, sms());
    return plan ? "cublasLt " + lt::describe(plan->cand) : "cublasGemmEx";
  }
  static bool same_bits(const Tensor& a, const Tensor& b) {
    return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
  }
};

struct Shape3 {
  const char* name;
  int64_t N, K;
  bool bias;
};

TEST_F(CudaGemmDecodeTest, DecodeShapesMatchCpuAndRepeat) {
  const Shape3 shapes[] = {{"qkv", 2048, 1536, true},    {"o", 1536, 1536, false},  {"gate_up", 17920, 1536, false},
                           {"down", 1536, 8960, false},  {"odd 1000x520", 1000, 520, true},
                           {"odd 19x40", 19, 40, true}};  // 40 * 2 bytes: rows 16-byte aligned only in part
  for (const Shape3& s : shapes) {
    Tensor W = rand({s.N, s.K}), b = rand({s.N});
    Tensor Wd = bf(W), bd = bf(b);
    for (int64_t M : {1, 3, 64, 256, 1024}) {
      Tensor x = rand({M, s.K});
      Tensor xd = bf(x);
      for (bool with_bias : {false, true}) {
        if (with_bias && !s.bias) continue;
        const std::string tag = std::string(s.name) + " M=" + std::to_string(M) + (with_bias ? " +bias" : "");
        Tensor out = poisoned(*g, {M, s.N}, BF16), ref = Tensor::empty({M, s.N}, F32);
        std::printf("%s: %s\n", tag.c_str(), path(xd, Wd, out, with_bias ? &bd : nullptr, false).c_str());
        g->matmul_forward(out, xd, Wd, with_bias ? &bd : nullptr);
        cpu->matmul_forward(ref, x, W, with_bias ? &b : nullptr);
        const Tensor got = host(out);
        expect_close_scaled(got, ref, 2e-2, "matmul_forward " + tag);
        g->matmul_forward(out, xd, Wd, with_bias ? &bd : nullptr);
        EXPECT_TRUE(same_bits(host(out), got)) << tag << ": a second call differs";
      }
      if (s.N * M <= 2048 * 1024 || M <= 64) {  // f32 outputs (the LM head's gemm)
        const std::string tag = std::string(s.name) + " M=" + std::to_string(M) + " f32";
        Tensor out = poisoned(*g, {M, s.N}, F32), ref = Tensor::empty({M, s.N}, F32);
        std::printf("%s: %s\n", tag.c_str(), path(xd, Wd, out, nullptr, true).c_str());
        cu().gemm(false, true, M, s.N, s.K, 1.0f, xd.raw(), s.K, Wd.raw(), s.K, 0.0f, out.raw(), F32, s.N);
        cpu->matmul_forward(ref, x, W, nullptr);
        const Tensor got = host(out);
        expect_close(got, ref, 1e-4 * std::max(max_abs(ref), 1e-3), 1e-3, "gemm f32 " + tag);
        cu().gemm(false, true, M, s.N, s.K, 1.0f, xd.raw(), s.K, Wd.raw(), s.K, 0.0f, out.raw(), F32, s.N);
        EXPECT_TRUE(same_bits(host(out), got)) << tag << ": a second call differs";
      }
    }
  }
}

// Every split of the heuristic's first algorithm, forced (whatever the rule picks):
// agrees with the CPU, repeats bit for bit; beta = 1 adds onto the output.
TEST_F(CudaGemmDecodeTest, ForcedSplitsMatchCpu) {
  struct Case {
    int64_t M, N, K;
    bool bias, f32_out;
  };
  Tensor ws = g->alloc({int64_t(lt::kMaxWorkspace / 4)}, F32);
  int tried = 0;
  for (const Case& c : {Case{256, 1536, 1536, false, false}, Case{64, 2048, 1536, true, false},
                        Case{3, 1536, 8960, false, true}, Case{256, 1536, 8960, false, false}}) {
    Tensor W = rand({c.N, c.K}), x = rand({c.M, c.K}), b = rand({c.N}), c0 = rand({c.M, c.N});
    Tensor Wd = bf(W), xd = bf(x), bd = bf(b);
    Tensor ref = Tensor::empty({c.M, c.N}, F32);
    cpu->matmul_forward(ref, x, W, c.bias ? &b : nullptr);
    const DType ot = c.f32_out ? F32 : BF16;
    Tensor out = poisoned(*g, {c.M, c.N}, ot);
    lt::Problem p;
    ASSERT_TRUE(lt::make_problem(c.M, c.N, c.K, c.f32_out, c.bias, xd.raw(), c.K, Wd.raw(), c.K, out.raw(), c.N,
                                 bd.raw(), &p));
    lt::Descs ds(p);
    const auto list = lt::heuristic(ds, 1);
    ASSERT_FALSE(list.empty()) << "cublasLt has no algorithm for M=" << c.M << " N=" << c.N << " K=" << c.K;
    for (int s : {1, 2, 3, 4, 8}) {
      lt::Candidate cand;
      if (!lt::with_split(ds, list[0], s, &cand)) continue;
      ++tried;
      const std::string tag = "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" +
                              std::to_string(c.K) + " " + lt::describe(cand);
      lt::run(ds, cand, xd.raw(), Wd.raw(), out.raw(), c.bias ? bd.raw() : nullptr, 1.0f, 0.0f, ws.raw(), cu().stream());
      const Tensor got = host(out);
      if (c.f32_out) expect_close(got, ref, 1e-4 * max_abs(ref), 1e-3, tag);
      else expect_close_scaled(got, ref, 2e-2, tag);
      lt::run(ds, cand, xd.raw(), Wd.raw(), out.raw(), c.bias ? bd.raw() : nullptr, 1.0f, 0.0f, ws.raw(), cu().stream());
      EXPECT_TRUE(same_bits(host(out), got)) << tag << ": a second run differs";
      if (c.f32_out) {  // beta = 1: out = c0 + x W^T
        Tensor acc = f32(c0);
        lt::run(ds, cand, xd.raw(), Wd.raw(), acc.raw(), nullptr, 1.0f, 1.0f, ws.raw(), cu().stream());
        Tensor want = host_clone(ref);
        for (int64_t i = 0; i < want.numel(); ++i) want.data<float>()[i] += c0.data<float>()[i];
        expect_close(host(acc), want, 1e-4 * max_abs(want), 1e-3, tag + " beta=1");
      }
    }
  }
  EXPECT_GT(tried, 8) << "cublasLt accepted too few split configurations";
}

// The decode step runs as a recorded graph: the graph's result equals the eager one bit for bit.
TEST_F(CudaGemmDecodeTest, GraphMatchesEager) {
  const int64_t M = 256, N = 2048, K = 1536;
  Tensor W = rand({N, K}), x = rand({M, K}), b = rand({N});
  Tensor Wd = bf(W), xd = bf(x), bd = bf(b);
  Tensor out = poisoned(*g, {M, N}, BF16), out2 = poisoned(*g, {M, N}, BF16);
  g->matmul_forward(out, xd, Wd, &bd);
  const Tensor eager = host(out);
  ASSERT_TRUE(g->graph_begin());
  g->matmul_forward(out2, xd, Wd, &bd);
  const int id = g->graph_end();
  g->graph_launch(id);
  EXPECT_TRUE(same_bits(host(out2), eager)) << "graph vs eager";
  g->graph_release(id);
}

TEST(GemmLtRule, ParsesAndRejects) {
  const lt::Rule off = lt::parse_rule("off");
  EXPECT_FALSE(off.on);
  const lt::Rule r = lt::parse_rule("rows=300,ranks=4,kmin=64,k0=32,splits=8");
  EXPECT_TRUE(r.on);
  EXPECT_EQ(r.max_rows, 300);
  EXPECT_EQ(r.ranks, 4);
  EXPECT_EQ(r.kmin, 64);
  EXPECT_EQ(r.k0, 32);
  EXPECT_EQ(r.max_split, 8);
  EXPECT_TRUE(r.bias);
  EXPECT_FALSE(lt::parse_rule("bias=0").bias);
  EXPECT_EQ(lt::parse_rule(r.str()).str(), r.str());
  EXPECT_THROW(lt::parse_rule("rows"), Error);
  EXPECT_THROW(lt::parse_rule("rows=-3"), Error);
  EXPECT_THROW(lt::parse_rule("width=3"), Error);
}

}  // namespace
}  // namespace temper::gpu_test
