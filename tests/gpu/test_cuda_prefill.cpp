// Packed prefill on the CUDA backend (InferenceEngine::prefill: a chunk of whole
// prompts attends through attention_forward, cuDNN's fused flash attention for
// D = 64 / 128, the own kernels otherwise; a chunk holding part of a longer prompt
// through attention_cached): its logits and the caches it leaves (seen through a
// decode step) match the engine with packed prefill off and the CPU engine, the
// backend keeps the packed path (no fallback), and two prefills give the same
// logits bit for bit. Without a GPU every test skips.
#include <cmath>

#include "gpu_test_util.h"
#include "model/decoder.h"
#include "model/inference.h"

namespace temper::gpu_test {
namespace {

class CudaPrefillTest : public CudaVsCpuTest {
 protected:
  CudaPrefillTest() : CudaVsCpuTest(19) {}

  // max |dev - ref| / max |ref| (inf when dev holds a non-finite value)
  double worst(const Tensor& dev, const Tensor& ref_any) {
    Tensor a = to_host(*g, dev), ref = Tensor::empty(ref_any.shape(), DType::F32);
    cpu->copy(ref, ref_any);
    double num = 0, den = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const double x = double(a.data<float>()[i]), y = double(ref.data<float>()[i]);
      if (!std::isfinite(x)) return double(INFINITY);
      num = std::max(num, std::fabs(x - y));
      den = std::max(den, std::fabs(y));
    }
    return num / std::max(den, 1e-30);
  }

  void run_case(int head_dim, bool qk_norm) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim) + (qk_norm ? " qk_norm" : ""));
    ModelConfig c;
    c.vocab_size = 301;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = head_dim;
    c.d_model = 4 * head_dim;
    c.n_layers = 2;
    c.ffn_dim = 160;
    c.init_std = 0.05f;
    c.qkv_bias = !qk_norm;
    c.qk_norm = qk_norm;
    c.validate();
    Decoder mc(c, *cpu, DType::F32);
    mc.init_random(5);
    Decoder mg(c, *g, DType::F32);  // bf16 compute copies on the GPU
    ASSERT_EQ(mg.params().size(), mc.params().size());
    for (size_t i = 0; i < mc.params().size(); ++i) g->copy(mg.params()[i].value, mc.params()[i].value);
    mg.refresh_compute();
    // chunks of 96 tokens: [70 | 20] packed (2 documents), [96 of 150] cached (split),
    // [54 of 150 | 5 | 33] cached (first row mid-prompt), [60] packed, [96] packed
    const std::vector<int> lens{70, 20, 150, 5, 33, 60, 96};
    const int S = int(lens.size()), T = 160, chunk = 96;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<int> slots;
    for (int i = 0; i < S; ++i) {
      std::vector<int32_t> p(static_cast<size_t>(lens[size_t(i)]));
      for (auto& t : p) t = int32_t(rng.below(uint64_t(c.vocab_size)));
      prompts.push_back(p);
      slots.push_back(S - 1 - i);
    }
    InferenceEngine ec(mc, *cpu, S, T, chunk), ep(mg, *g, S, T, chunk), en(mg, *g, S, T, chunk);
    ec.set_packed_prefill(false);
    en.set_packed_prefill(false);
    Tensor rc = ec.prefill(slots, prompts);
    Tensor rcf = Tensor::empty(rc.shape(), DType::F32);
    cpu->copy(rcf, rc);
    Tensor first = to_host(*g, ep.prefill(slots, prompts));
    EXPECT_TRUE(ep.packed_prefill()) << "the backend refused attention_forward";
    const double packed_cpu = worst(ep.prefill(slots, prompts), rcf);
    Tensor again = to_host(*g, ep.prefill(slots, prompts));
    for (int64_t i = 0; i < first.numel(); ++i)
      ASSERT_EQ(first.data<float>()[i], again.data<float>()[i]) << "prefill not reproducible at " << i;
    const double cached_cpu = worst(en.prefill(slots, prompts), rcf);
    EXPECT_LT(packed_cpu, 3e-2) << "packed prefill vs CPU";
    EXPECT_LT(cached_cpu, 3e-2) << "cached prefill vs CPU";
    EXPECT_LT(std::fabs(packed_cpu - cached_cpu), 1e-2);
    // One decode step in every slot reads the caches the prefill wrote.
    std::vector<int32_t> toks, pos;
    for (int i = 0; i < S; ++i) {
      toks.push_back(int32_t((i * 37 + 11) % c.vocab_size));
      pos.push_back(int32_t(lens[size_t(i)]));
    }
    Tensor dc = ec.decode(slots, toks, pos);
    Tensor dcf = Tensor::empty(dc.shape(), DType::F32);
    cpu->copy(dcf, dc);
    EXPECT_LT(worst(ep.decode(slots, toks, pos), dcf), 3e-2) << "decode after packed prefill vs CPU";
    EXPECT_LT(worst(en.decode(slots, toks, pos), dcf), 3e-2) << "decode after cached prefill vs CPU";
  }
};

TEST_F(CudaPrefillTest, PackedPrefillMatchesCachedAndCpu) {
  run_case(64, false);   // cuDNN (when linked), GQA, qkv bias
  run_case(128, true);   // cuDNN, qk_norm
  run_case(32, false);   // the own kernels
}

}  // namespace
}  // namespace temper::gpu_test
