// Random initialisation on the GPU (Kernels::fill_normal, Decoder::init_random):
// the same bits as the CPU backend, for f32 and f64 tensors of odd sizes and for
// a whole decoder. Skips (exit 77) without a GPU.
#include <gtest/gtest.h>

#include <cstring>

#include "gpu/gpu_test_util.h"
#include "model/decoder.h"

namespace temper {
namespace {

using gpu_test::cuda_backend;

Tensor download(Kernels& g, const Tensor& dev) {  // same dtype
  Tensor h = Tensor::empty(dev.shape(), dev.dtype());
  g.copy(h, dev);
  g.synchronize();
  return h;
}

TEST(CudaFillNormal, SameBitsAsTheCpu) {
  TEMPER_REQUIRE_GPU();
  Kernels& g = *cuda_backend();
  auto c = make_cpu_kernels();
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t n : {int64_t(1), int64_t(2), int64_t(999), int64_t(1) << 20, (int64_t(3) << 20) + 7})
      for (auto [seed, stream] : {std::pair<uint64_t, uint32_t>{0, 0}, {42, 17}, {~0ull, 123456}}) {
        Tensor d = g.alloc({n}, dt), h = c->alloc({n}, dt);
        g.fill_normal(d, seed, stream, 0.02);
        c->fill_normal(h, seed, stream, 0.02);
        const Tensor back = download(g, d);
        ASSERT_EQ(std::memcmp(back.raw(), h.raw(), size_t(n) * dtype_size(dt)), 0)
            << dtype_name(dt) << " n " << n << " seed " << seed << " stream " << stream;
      }
}

TEST(CudaFillNormal, DecoderInitialisationIsTheCpusBitForBit) {
  TEMPER_REQUIRE_GPU();
  Kernels& g = *cuda_backend();
  auto c = make_cpu_kernels();
  ModelConfig cfg;
  cfg.vocab_size = 263, cfg.d_model = 96, cfg.n_layers = 2, cfg.n_heads = 6, cfg.n_kv_heads = 2;
  cfg.head_dim = 32, cfg.ffn_dim = 200, cfg.qkv_bias = true;
  cfg.validate();
  Decoder mc(cfg, *c, DType::F32), mg(cfg, g, DType::F32);
  mc.init_random(31), mg.init_random(31);
  ASSERT_EQ(mc.params().size(), mg.params().size());
  for (size_t i = 0; i < mc.params().size(); ++i) {
    const Tensor& hc = mc.params()[i].value;
    const Tensor back = download(g, mg.params()[i].value);
    ASSERT_EQ(std::memcmp(back.raw(), hc.raw(), size_t(hc.numel()) * 4), 0) << mc.params()[i].name;
  }
}

}  // namespace
}  // namespace temper
