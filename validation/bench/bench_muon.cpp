// bench_muon: optimizer step time of AdamW and Muon (5 Newton-Schulz steps on
// every hidden matrix, bf16 GEMMs on CUDA) for the parameters of a benchmark
// shape, plus the QK-clip measurement (attention_max_logit) for one packed
// sequence. Gradients are the weights themselves (any non-zero matrix will do:
// the step time does not depend on the values). Prints one line per row and a
// JSON line for scripts.
//
//   bench_muon [--backend cuda|cpu] [--shape qwen2-0.5b|qwen2-1.5b|tiny] [--steps 3] [--seq 4096]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/decoder.h"
#include "train/model_state.h"
#include "train/muon.h"
#include "train/optimizer.h"
#include "validation/bench/bench_shapes.h"

using namespace temper;

int main(int argc, char** argv) {
  std::string backend = "cuda", shape = "qwen2-0.5b";
  int steps = 3;
  int64_t seq = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--backend") backend = v;
    else if (a == "--shape") shape = v;
    else if (a == "--steps") steps = std::atoi(v.c_str());
    else if (a == "--seq") seq = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "bench_muon: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    auto k = make_kernels(backend);
    const ModelConfig c = bench_shape_config(shape);
    Decoder model(c, *k, DType::F32);
    int64_t muon_elems = 0;
    std::map<std::string, Shape> shapes;
    for (auto& p : model.params()) {
      k->copy(p.grad, p.value);
      shapes[p.name] = p.value.shape();
      if (muon_eligible(p.name, p.value.shape())) muon_elems += p.value.numel();
    }
    auto time_steps = [&](Optimizer& opt) {
      opt.step(1e-4, 1.0);  // warmup (allocations)
      k->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) opt.step(1e-4, 1.0);
      k->synchronize();
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
    };
    AdamWConfig acfg;
    auto adam = make_adamw(*k, param_refs(model), acfg);
    const double adam_ms = time_steps(*adam);
    adam.reset();
    MuonConfig mcfg;
    std::vector<MuonParam> ps;
    for (auto& r : param_refs(model)) ps.push_back({r, r.value.shape(), muon_eligible(r.name, r.value.shape())});
    Muon muon(*k, ps, mcfg);
    const double muon_ms = time_steps(muon);
    // QK-clip's measurement: attention_max_logit over one document of seq tokens, every layer
    const int64_t H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim;
    Tensor q = k->alloc({seq, H, D}, k->act_dtype()), kk = k->alloc({seq, KVH, D}, k->act_dtype());
    k->zero(q);
    k->zero(kk);
    Tensor cu = k->alloc({2}, DType::I32), host_cu = Tensor::empty({2}, DType::I32);
    host_cu.data<int32_t>()[0] = 0;
    host_cu.data<int32_t>()[1] = int32_t(seq);
    k->copy(cu, host_cu);
    Tensor out = k->alloc({H}, k->act_dtype() == DType::F64 ? DType::F64 : DType::F32);
    k->zero(out);
    k->attention_max_logit(out, q, kk, cu, int(seq));
    k->synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int l = 0; l < c.n_layers; ++l) k->attention_max_logit(out, q, kk, cu, int(seq));
    k->synchronize();
    const double logit_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("bench_muon %s on %s: %lld parameters, %lld in Muon matrices\n", shape.c_str(), backend.c_str(),
                (long long)c.param_count(), (long long)muon_elems);
    std::printf("  AdamW step            %10.2f ms\n", adam_ms);
    std::printf("  Muon step (NS5)       %10.2f ms  (%.2fx AdamW)\n", muon_ms, muon_ms / adam_ms);
    std::printf("  max-logit, %d layers  %10.2f ms  (seq %lld)\n", c.n_layers, logit_ms, (long long)seq);
    std::printf("{\"shape\":\"%s\",\"backend\":\"%s\",\"adamw_ms\":%.3f,\"muon_ms\":%.3f,\"max_logit_ms\":%.3f,"
                "\"seq\":%lld}\n", shape.c_str(), backend.c_str(), adam_ms, muon_ms, logit_ms, (long long)seq);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_muon: %s\n", e.what());
    return 2;
  }
  return 0;
}
