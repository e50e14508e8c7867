// CUDA copy_heads (the Ulysses head-block copies) vs the default implementation on
// the CPU oracle: plain copies bit-exact in f32 and bf16, accumulation within bf16
// rounding, untouched heads unchanged. Without a GPU every test skips.
#include "gpu_test_util.h"

namespace temper::gpu_test {

TEST(CudaCopyHeads, MatchesCpu) {
  TEMPER_REQUIRE_GPU();
  Kernels& g = *cuda_backend();
  auto cpu = make_cpu_kernels();
  Rng rng(7);
  struct Case { int64_t N, Hd, Hs, D, dst_head, src_head, count; };
  for (const Case& c : {Case{37, 6, 4, 8, 3, 1, 2}, Case{300, 2, 8, 64, 0, 6, 2}, Case{1, 3, 3, 16, 0, 0, 3}}) {
    for (bool acc : {false, true}) {
      for (DType dt : {DType::F32, DType::BF16}) {
        Tensor d0 = host_rand({c.N, c.Hd, c.D}, rng), s = host_rand({c.N, c.Hs, c.D}, rng);
        Tensor ref = host_clone(d0);
        cpu->copy_heads(ref, c.dst_head, s, c.src_head, c.count, acc);
        Tensor dd = to_dev(g, d0, dt), ds = to_dev(g, s, dt);
        g.copy_heads(dd, c.dst_head, ds, c.src_head, c.count, acc);
        const std::string what = std::string(acc ? "accumulate " : "copy ") + dtype_name(dt) + " N " +
                                 std::to_string(c.N);
        expect_close(to_host(g, dd), ref, 0.0, acc && dt == DType::BF16 ? 1e-2 : 1e-6, what);
      }
    }
  }
  Tensor a = g.alloc({4, 2, 8}, DType::F32), b = g.alloc({4, 2, 8}, DType::F32);
  EXPECT_THROW(g.copy_heads(a, 1, b, 0, 2, false), Error);  // heads out of range
}

}  // namespace temper::gpu_test
