// Decode attention against the generation KV cache (kernels.h attention_cached)
// at the rollout shapes: `batch` slots, one new token each at cached length
// `len`, every layer of the shape (one call per layer, as a decode step makes).
// Prints ms per step (all layers), the K/V bytes read per step and the bandwidth
// they reach, next to the device's copy bandwidth measured in the same run (a
// 2 GiB device-to-device copy, read + write counted), and one JSON line per row.
//   bench_kv_decode [--backend cuda] [--shapes qwen2-1.5b] [--batches 64,256,1024]
//                   [--lens 256,1024] [--reps 20]
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "validation/bench/bench_shapes.h"

using namespace temper;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename F>
double seconds_per_call(Kernels& k, int reps, F&& f) {
  f();
  k.synchronize();
  const double t0 = now();
  for (int r = 0; r < reps; ++r) f();
  k.synchronize();
  return (now() - t0) / reps;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    std::string backend = "cuda", shapes = "qwen2-1.5b", batches = "64,256,1024", lens = "256,1024";
    int reps = 20;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto val = [&]() -> std::string {
        TEMPER_CHECK(i + 1 < argc, "bench_kv_decode: ", a, " needs a value");
        return argv[++i];
      };
      if (a == "--backend") backend = val();
      else if (a == "--shapes") shapes = val();
      else if (a == "--batches") batches = val();
      else if (a == "--lens") lens = val();
      else if (a == "--reps") reps = std::stoi(val());
      else fail("bench_kv_decode: unknown option ", a);
    }
    TEMPER_CHECK(reps > 0, "bench_kv_decode: --reps must be positive, got ", reps);
    auto k = make_kernels(backend);
    const DType dt = k->act_dtype();
    double bw = 0;
    {
      const int64_t n = int64_t(1) << 30;
      Tensor a = k->alloc({n}, DType::BF16), b = k->alloc({n}, DType::BF16);
      k->zero(a);
      bw = 2.0 * double(n) * 2.0 / seconds_per_call(*k, 10, [&] { k->copy(b, a); });
    }
    std::printf("device copy bandwidth (read + write): %.0f GB/s\n", bw / 1e9);
    std::printf("| shape | batch | cached len | ms/step (all layers) | KV MB/step | GB/s | of copy bandwidth |\n"
                "|---|---:|---:|---:|---:|---:|---:|\n");
    std::stringstream ss(shapes);
    for (std::string shape; std::getline(ss, shape, ',');) {
      const ModelConfig c = bench_shape_config(shape);
      const int64_t H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim;
      for (int B : bench_split_ints(batches)) {
        for (int len : bench_split_ints(lens)) {
          const int64_t T = len;
          Tensor kc = k->alloc({B, T, KVH, D}, dt), vc = k->alloc({B, T, KVH, D}, dt);
          k->zero(kc);
          k->zero(vc);
          Tensor q = k->alloc({B, H, D}, dt), out = k->alloc({B, H, D}, dt);
          k->zero(q);
          Tensor hs = Tensor::empty({B}, DType::I32), hp = Tensor::empty({B}, DType::I32);
          for (int i = 0; i < B; ++i) {
            hs.data<int32_t>()[i] = i;
            hp.data<int32_t>()[i] = len - 1;
          }
          Tensor slot = k->alloc({B}, DType::I32), pos = k->alloc({B}, DType::I32);
          k->copy(slot, hs);
          k->copy(pos, hp);
          const double s = seconds_per_call(*k, reps, [&] {
            for (int l = 0; l < c.n_layers; ++l) k->attention_cached(out, q, kc, vc, slot, pos);
          });
          const double bytes = 2.0 * c.n_layers * double(B) * len * KVH * D * double(dtype_size(dt));
          std::printf("| %s | %d | %d | %.3f | %.0f | %.0f | %.2f |\n", shape.c_str(), B, len, s * 1e3, bytes / 1e6,
                      bytes / s / 1e9, bytes / s / bw);
          std::printf("JSON {\"bench\":\"kv_decode\",\"shape\":\"%s\",\"batch\":%d,\"len\":%d,\"ms\":%.4f,\"kv_bytes\":%.0f,"
                      "\"GBps\":%.1f,\"copy_GBps\":%.1f}\n",
                      shape.c_str(), B, len, s * 1e3, bytes, bytes / s / 1e9, bw / 1e9);
          std::fflush(stdout);
        }
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kv_decode: error: %s\n", e.what());
    return 1;
  }
}
