// Benchmark of temper's CUDA attention (kernels.h attention_forward and
// attention_backward) at the Qwen2-1.5B (H=12, KVH=2, D=128) and Qwen2-0.5B
// (H=14, KVH=2, D=64) head layouts, one causal document of 4K, 16K and 32K
// tokens. Prints a table with milliseconds and TFLOP/s, counting causal FLOPs
// as the usual convention does: forward 2 matmuls x 2 FLOPs x S^2/2 x H x D,
// backward 2.5x forward. Lines starting with "RESULT" are for
// validation/bench/run_attention.sh, which sets them beside PyTorch SDPA.
// One row per kernel variant (v1, v2: own mma.sync kernels; v3: cuDNN's fused
// flash attention; TEMPER_ATTN_FWD / _BWD, set here for both passes; see
// kernels/cuda/attention_variant.h). A variant that fell back (v3 without
// cuDNN) prints a note instead of a row.
// Usage: bench_attention [seq ...]   (default 4096 16384 32768);
// BENCH_ATTN_VARIANTS=2,3 runs only those variants; BENCH_ATTN_DETERMINISTIC=0
// turns run.deterministic off (the backward's nondeterministic engines).
// Exits 77 (skipped) when no CUDA device is available.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#if TEMPER_HAVE_CUDA
#include "kernels/cuda/attention_variant.h"
#endif

namespace {

using temper::DType;
using temper::Kernels;
using temper::Tensor;

struct Shape3 {
  const char* name;
  int64_t H, KVH, D;
};

Tensor random_device(Kernels& g, const temper::Shape& s, temper::Rng& rng) {
  Tensor h = Tensor::empty(s, DType::F32);
  float* p = h.data<float>();
  for (int64_t i = 0; i < h.numel(); ++i) p[i] = rng.normal();
  Tensor d = g.alloc(s, DType::BF16);
  g.copy(d, h);
  return d;
}

// Mean wall time in ms of fn over reps runs after warm-up, synchronised.
template <typename Fn>
double time_ms(Kernels& g, int reps, Fn fn) {
  for (int i = 0; i < 2; ++i) fn();
  g.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  g.synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> seqs;
  for (int i = 1; i < argc; ++i) seqs.push_back(std::atoll(argv[i]));
  if (seqs.empty()) seqs = {4096, 16384, 32768};
  std::unique_ptr<Kernels> g;
  try {
    g = temper::make_cuda_kernels(0);
  } catch (const temper::Error& e) {
    std::printf("bench_attention skipped: %s\n", e.what());
    return 77;
  }
  const char* only = std::getenv("BENCH_ATTN_VARIANTS");  // e.g. "2,3": only these variants
  // BENCH_ATTN_DETERMINISTIC=0: run.deterministic off (cuDNN's nondeterministic
  // backward, dQ by f32 atomics, as PyTorch's SDPA runs); default on, as training.
  const char* det = std::getenv("BENCH_ATTN_DETERMINISTIC");
  const bool deterministic = det == nullptr || std::string(det) != "0";
  g->set_deterministic(deterministic);
  const std::vector<Shape3> shapes = {{"qwen2-1.5b", 12, 2, 128}, {"qwen2-0.5b", 14, 2, 64}};
  temper::Rng rng(1234);
  std::printf("temper CUDA attention (bf16, causal, one document, deterministic %s)\n", deterministic ? "on" : "off");
  int n_variants = 1;
#if TEMPER_HAVE_CUDA
  n_variants = temper::cuda::kAttnVariants;
#endif
  std::printf("%-11s %6s %3s %4s %4s %4s | %9s %8s | %9s %8s | %9s %8s\n", "model", "seq", "var", "H", "KVH", "D", "fwd ms",
              "TFLOP/s", "bwd ms", "TFLOP/s", "f+b ms", "TFLOP/s");
  try {
    for (const Shape3& sh : shapes) {
      for (int64_t S : seqs) {
        Tensor q = random_device(*g, {S, sh.H, sh.D}, rng), k = random_device(*g, {S, sh.KVH, sh.D}, rng),
               v = random_device(*g, {S, sh.KVH, sh.D}, rng), dout = random_device(*g, {S, sh.H, sh.D}, rng);
        Tensor out = g->alloc({S, sh.H, sh.D}, DType::BF16), lse = g->alloc({S, sh.H}, DType::F32);
        Tensor dq = g->alloc({S, sh.H, sh.D}, DType::BF16), dk = g->alloc({S, sh.KVH, sh.D}, DType::BF16),
               dv = g->alloc({S, sh.KVH, sh.D}, DType::BF16);
        Tensor cu_h = Tensor::empty({2}, DType::I32);
        cu_h.data<int32_t>()[0] = 0;
        cu_h.data<int32_t>()[1] = int32_t(S);
        Tensor cu = g->alloc({2}, DType::I32);
        g->copy(cu, cu_h);
        const int reps = S <= 4096 ? 20 : S <= 16384 ? 6 : 3;
        for (int var = 1; var <= n_variants; ++var) {
          if (only != nullptr && std::string(only).find(std::to_string(var)) == std::string::npos) continue;
#if TEMPER_HAVE_CUDA
        temper::cuda::set_attention_variant(temper::cuda::AttnPass::Forward, var);
        temper::cuda::set_attention_variant(temper::cuda::AttnPass::Backward, var);
#endif
        const double fwd = time_ms(*g, reps, [&] { g->attention_forward(out, lse, q, k, v, cu, int(S)); });
        const double bwd = time_ms(*g, reps, [&] {
          g->attention_backward(dq, dk, dv, dout, out, lse, q, k, v, cu, int(S));
        });
        int ran_f = var, ran_b = var;
#if TEMPER_HAVE_CUDA
        ran_f = temper::cuda::attention_last_variant(temper::cuda::AttnPass::Forward);
        ran_b = temper::cuda::attention_last_variant(temper::cuda::AttnPass::Backward);
#endif
        if (ran_f != var || ran_b != var) {  // v3 without cuDNN (or refused): not a v3 figure
          std::printf("%-11s %6lld  v%d fell back to forward v%d / backward v%d: no row\n", sh.name, (long long)S, var,
                      ran_f, ran_b);
          continue;
        }
        const double flops_fwd = 2.0 * double(S) * double(S) * double(sh.H) * double(sh.D);
        const double flops_bwd = 2.5 * flops_fwd;
        const double tf_f = flops_fwd / (fwd * 1e9), tf_b = flops_bwd / (bwd * 1e9);
        const double tf_fb = (flops_fwd + flops_bwd) / ((fwd + bwd) * 1e9);
        std::printf("%-11s %6lld  v%d %4lld %4lld %4lld | %9.3f %8.1f | %9.3f %8.1f | %9.3f %8.1f\n", sh.name,
                    (long long)S, var, (long long)sh.H, (long long)sh.KVH, (long long)sh.D, fwd, tf_f, bwd, tf_b,
                    fwd + bwd, tf_fb);
        std::printf("RESULT temper%s%s %s %lld %.3f %.3f %.3f\n", var == 1 ? "" : ("_v" + std::to_string(var)).c_str(),
                    deterministic ? "" : "_nondet", sh.name, (long long)S, tf_f, tf_b, tf_fb);
        std::fflush(stdout);
        }
      }
    }
  } catch (const temper::Error& e) {
    std::fprintf(stderr, "bench_attention: %s\n", e.what());
    return 1;
  }
  return 0;
}
