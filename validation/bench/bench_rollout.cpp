// Rollout throughput of temper's generation engine (KV cache, continuous
// batching, on-device sampling) on random-init Qwen2 shapes: `batch` prompts of
// `prompt_len` random tokens, `new_tokens` sampled each (no stop token, so every
// sequence runs to the budget), temperature 1. Prints a table and one JSON line
// per row (for validation/bench/run_bench.sh).
//   bench_rollout [--backend cuda|cpu] [--shapes qwen2-1.5b] [--batches 64,256]
//                 [--prompt-len 128] [--new-tokens 256]
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "rl/generation.h"
#include "validation/bench/bench_shapes.h"

using namespace temper;

namespace {
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    std::string backend = "cuda", shapes = "qwen2-1.5b", batches = "64,256";
    int prompt_len = 128, new_tokens = 256;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto val = [&]() -> std::string {
        TEMPER_CHECK(i + 1 < argc, "bench_rollout: ", a, " needs a value");
        return argv[++i];
      };
      if (a == "--backend") backend = val();
      else if (a == "--shapes") shapes = val();
      else if (a == "--batches") batches = val();
      else if (a == "--prompt-len") prompt_len = std::stoi(val());
      else if (a == "--new-tokens") new_tokens = std::stoi(val());
      else fail("bench_rollout: unknown option ", a);
    }
    auto k = make_kernels(backend);
    std::printf("| shape | batch | prompt | new | gen tok/s | seconds | engine GiB |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& shape : split(shapes)) {
      const ModelConfig cfg = bench_shape_config(shape);
      Decoder model(cfg, *k, DType::F32);
      model.init_random(1);
      for (const auto& bs : split(batches)) {
        const int B = std::stoi(bs);
        Rng rng(7);
        std::vector<std::vector<int32_t>> prompts(size_t(B), std::vector<int32_t>(size_t(prompt_len), 0));
        for (auto& p : prompts)
          for (auto& t : p) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));
        Generator gen(model, *k, B, nullptr, prompt_len + new_tokens);
        SamplingOptions so;
        so.max_new_tokens = new_tokens;
        so.temperature = 1.0f;
        so.seed = 3;
        // warm-up: a short run allocates the engine and touches every kernel
        SamplingOptions warm = so;
        warm.max_new_tokens = 4;
        gen.generate(prompts, warm);
        k->synchronize();
        const auto t0 = std::chrono::steady_clock::now();
        auto out = gen.generate(prompts, so);
        k->synchronize();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        int64_t toks = 0;
        for (const auto& g : out) toks += int64_t(g.tokens.size());
        const double gib = 0;  // engine bytes are reported by the Generator's stats line
        std::printf("| %s | %d | %d | %d | %.0f | %.2f | %s |\n", shape.c_str(), B, prompt_len, new_tokens,
                    double(toks) / s, s, gen.last_stats().line().c_str());
        std::printf("JSON {\"bench\":\"rollout\",\"impl\":\"temper\",\"shape\":\"%s\",\"batch\":%d,\"prompt_len\":%d,"
                    "\"new_tokens\":%d,\"tokens_per_s\":%.1f,\"seconds\":%.3f}\n",
                    shape.c_str(), B, prompt_len, new_tokens, double(toks) / s, s);
        (void)gib;
        std::fflush(stdout);
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_rollout: error: %s\n", e.what());
    return 1;
  }
}
