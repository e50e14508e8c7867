// CUDA vs the f32 CPU oracle for the Muon / QK-clip ops: axpby in every dtype
// pair, attention_max_logit (GQA, packed and empty documents, accumulation),
// the Newton-Schulz orthogonalisation (wide and tall, bf16 GEMMs) and a whole
// Muon step. Without a GPU every test skips.
#include <cmath>

#include "gpu_test_util.h"
#include "train/muon.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32;

class CudaMuonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TEMPER_REQUIRE_GPU();
    g = cuda_backend();
    cpu = make_cpu_kernels();
  }
  Kernels* g = nullptr;
  std::unique_ptr<Kernels> cpu;
};

TEST_F(CudaMuonTest, AxpbyMatchesCpu) {
  Rng rng{11};
  for (DType dy : {F32, BF16})
    for (DType dx : {F32, BF16})
      for (double a : {0.0, 0.9}) {
        Tensor y = host_rand({1000}, rng), x = host_rand({1000}, rng);
        Tensor dev_y = to_dev(*g, y, dy), dev_x = to_dev(*g, x, dx);
        g->axpby(dev_y, a, dev_x, -1.7);
        Tensor ref = host_clone(y);
        cpu->axpby(ref, a, x, -1.7);
        expect_close(gpu_test::to_host(*g, dev_y), ref, 1e-6, dy == BF16 ? 1e-2 : 1e-6,
                     std::string("axpby y ") + dtype_name(dy) + " x " + dtype_name(dx) + " a " + std::to_string(a));
      }
}

TEST_F(CudaMuonTest, AttentionMaxLogitMatchesCpu) {
  Rng rng{12};
  struct Case { std::vector<int32_t> cu; int64_t H, KVH, D; };
  // the last case has more tokens than one score chunk (2^25 / N rows): two GEMM chunks
  for (const Case& cs : {Case{{0, 40, 40, 97}, 4, 2, 32}, Case{{0, 300}, 6, 1, 64}, Case{{0, 1, 9}, 3, 3, 17},
                         Case{{0, 2500, 6000}, 2, 1, 64}}) {
    const int64_t N = cs.cu.back();
    Tensor q = host_rand({N, cs.H, cs.D}, rng), k = host_rand({N, cs.KVH, cs.D}, rng);
    Tensor cu = host_i32(cs.cu);
    int max_len = 0;
    for (size_t s = 0; s + 1 < cs.cu.size(); ++s) max_len = std::max(max_len, cs.cu[s + 1] - cs.cu[s]);
    Tensor ref = Tensor::empty({cs.H}, F32);
    for (int64_t h = 0; h < cs.H; ++h) ref.data<float>()[h] = h == 0 ? 1e4f : -INFINITY;  // head 0: accumulation
    Tensor dev = to_dev(*g, ref, F32);
    cpu->attention_max_logit(ref, q, k, cu, max_len);
    g->attention_max_logit(dev, to_dev(*g, q, BF16), to_dev(*g, k, BF16), to_dev(*g, cu, DType::I32), max_len);
    expect_close(gpu_test::to_host(*g, dev), ref, 1e-4, 1e-4, "attention_max_logit N=" + std::to_string(N));
  }
}

TEST_F(CudaMuonTest, NewtonSchulzMatchesCpu) {
  Rng rng{13};
  for (auto [m, n] : {std::pair<int64_t, int64_t>{48, 160}, {200, 64}, {96, 96}}) {
    Tensor gh = host_rand({m, n}, rng, 0.0, 1.0);
    Tensor ref = Tensor::empty({m, n}, F32), dev_out = g->alloc({m, n}, F32);
    newton_schulz(*cpu, gh, ref, 5, F32);
    newton_schulz(*g, to_dev(*g, gh, F32), dev_out, 5, BF16);
    // bf16 GEMMs: entries of O are ~1/sqrt(max(m, n)); compare relative to that scale
    const double scale = max_abs(ref);
    expect_close(gpu_test::to_host(*g, dev_out), ref, 0.08 * scale, 0.08, "newton_schulz " + std::to_string(m) + "x" +
                 std::to_string(n));
  }
}

TEST_F(CudaMuonTest, MuonStepMatchesCpu) {
  Rng rng{14};
  const std::vector<std::pair<std::string, Shape>> spec = {{"w", {64, 96}}, {"t", {128, 32}}, {"norm", {64}}};
  std::vector<MuonParam> pc, pg;
  std::vector<Tensor> w0;
  for (const auto& [name, shape] : spec) {
    Tensor w = host_rand(shape, rng), gr = host_rand(shape, rng);
    w0.push_back(w);
    pc.push_back({{name, host_clone(w), host_clone(gr), true}, shape, shape.size() == 2});
    pg.push_back({{name, to_dev(*g, w, F32), to_dev(*g, gr, F32), true}, shape, shape.size() == 2});
  }
  Muon mc(*cpu, pc, MuonConfig{}), mg(*g, pg, MuonConfig{});
  for (int s = 0; s < 2; ++s) {
    mc.step(0.02, 0.5);
    mg.step(0.02, 0.5);
  }
  for (size_t i = 0; i < spec.size(); ++i) {
    // compare the change of the weights (the update), not the weights themselves
    Tensor dc = host_clone(pc[i].ref.value), dg = gpu_test::to_host(*g, pg[i].ref.value);
    cpu->axpby(dc, 1.0, w0[i], -1.0);
    cpu->axpby(dg, 1.0, w0[i], -1.0);
    expect_close(dg, dc, 0.08 * max_abs(dc), 0.08, "muon update of " + spec[i].first);
  }
}

}  // namespace
}  // namespace temper::gpu_test
