// The weight GEMMs of a decode step at small batch (kernels/cuda/gemm_lt.h):
// per GEMM of the shape (packed qkv with its bias, o, gate_up, down, the LM head
// with f32 logits) and per batch (rows M), the time of
//   - cublasGemmEx as before (the rule off: TEMPER_GEMM_LT=off),
//   - the backend with the rule in force (its choice, bitwise repeat checked, the
//     largest difference to cublasGemmEx's output),
//   - each rule of --rules (gemm_lt's choose() under those parameters),
//   - every candidate enumerated (the heuristic's top --top algorithms, each with
//     K split into each of --splits parts), the fastest named,
// next to the roofline: the weight bytes at the device's copy bandwidth measured
// in the same run. Each GEMM is timed as a CUDA graph of calls over enough copies
// of the weights that they do not stay in L2 (a decode step reads each layer's
// weights once), as the decode step runs.
//   bench_gemm_decode [--shape qwen2-1.5b] [--batches 64,256,1024] [--reps 5] [--top 16]
//                     [--splits 1,2,3,4,6,8,12,16] [--rules "spec;spec"] [--no-enum] [--no-head]
//                     [--enum-budget 40]  (seconds for the enumeration in all; the rest is always run)
#include <cstdio>
#include <string>
#include <vector>

#if TEMPER_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>

#include "core/error.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemm_lt.h"
#include "kernels/kernels.h"
#include "validation/bench/bench_shapes.h"

using namespace temper;
namespace lt = temper::cuda::gemm_lt;

namespace {

void check(cudaError_t e, const char* what) {
  TEMPER_CHECK(e == cudaSuccess, "bench_gemm_decode: ", what, ": ", cudaGetErrorString(e));
}

struct Gemm {
  std::string name;
  int64_t N, K;
  bool bias, f32_out;
  int per_step;  // calls in one decode step
};

struct Bench {
  CudaKernels& k;
  int reps;
  cudaEvent_t e0, e1;

  // us per call: `calls` launches recorded as one graph, replayed reps times
  template <typename F>
  double time_graph(int calls, F&& launch) {
    launch(0);  // eager first call: plans, cuBLAS's lazy setup
    k.synchronize();
    k.graph_begin();
    try {
      for (int i = 0; i < calls; ++i) launch(i);
    } catch (...) {
      try {
        k.graph_release(k.graph_end());  // end the capture, then pass the error on
      } catch (...) {
      }
      throw;
    }
    const int id = k.graph_end();
    k.graph_launch(id);
    k.synchronize();
    check(cudaEventRecord(e0, k.stream()), "event");
    for (int r = 0; r < reps; ++r) k.graph_launch(id);
    check(cudaEventRecord(e1, k.stream()), "event");
    check(cudaEventSynchronize(e1), "event sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    k.graph_release(id);
    return 1e3 * double(ms) / (double(reps) * calls);
  }
};

Tensor randn(CudaKernels& k, const Shape& s, uint64_t seed, double std, DType dt) {
  Tensor f = k.alloc(s, DType::F32);
  k.fill_normal(f, seed, 0, std);
  if (dt == DType::F32) return f;
  Tensor b = k.alloc(s, dt);
  k.copy(b, f);
  return b;
}

Tensor to_host(CudaKernels& k, const Tensor& d) {
  Tensor h = Tensor::empty(d.shape(), DType::F32);
  k.copy(h, d);
  k.synchronize();
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string shape = "qwen2-1.5b", batches = "64,256,1024", splits_s = "1,2,3,4,6,8,12,16";
    // the rule in force by default first, then the split-K variants measured on 2026-12-04
    std::string rules_s =
        "rows=1024,splits=1,bias=1;"
        "ranks=1,kmin=128,k0=128,red=0,splits=16,bias=0;"
        "ranks=1,kmin=128,k0=128,red=2,splits=16,bias=0;"
        "ranks=1,kmin=128,k0=128,red=6,splits=16,bias=0;"
        "ranks=1,kmin=256,k0=256,red=2,splits=16,bias=0;"
        "ranks=4,kmin=128,k0=128,red=2,splits=16,bias=0;"
        "ranks=8,kmin=128,k0=128,red=2,plain=1,splits=16,bias=0;"
        "ranks=8,kmin=128,k0=256,red=4,plain=1,splits=16,bias=0;"
        "ranks=16,kmin=128,k0=128,red=2,plain=1,splits=16,bias=0;"
        "ranks=8,kmin=128,k0=0,red=0,plain=1,splits=16,bias=0;"
        "ranks=4,kmin=256,k0=512,red=2,splits=16,bias=0;"
        "ranks=8,kmin=64,k0=64,red=1,plain=1,splits=16,bias=0";
    int reps = 5, top = 16;
    double enum_budget = 40;  // seconds of enumeration in all, shared evenly by the problems
    bool enumerate = true, head = true;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto val = [&]() -> std::string {
        TEMPER_CHECK(i + 1 < argc, "bench_gemm_decode: ", a, " needs a value");
        return argv[++i];
      };
      if (a == "--shape") shape = val();
      else if (a == "--batches") batches = val();
      else if (a == "--reps") reps = std::stoi(val());
      else if (a == "--top") top = std::stoi(val());
      else if (a == "--splits") splits_s = val();
      else if (a == "--rules") rules_s = val();
      else if (a == "--no-enum") enumerate = false;
      else if (a == "--enum-budget") enum_budget = std::stod(val());
      else if (a == "--no-head") head = false;
      else fail("bench_gemm_decode: unknown option ", a);
    }
    TEMPER_CHECK(reps > 0 && top > 0, "bench_gemm_decode: --reps and --top must be positive");
    std::vector<lt::Rule> rules;
    std::vector<std::string> rule_specs;
    {
      std::stringstream ss(rules_s);
      for (std::string r; std::getline(ss, r, ';');)
        if (!r.empty()) {
          rules.push_back(lt::parse_rule(r));
          rule_specs.push_back(r);
        }
    }
    const lt::Rule in_force = lt::default_rule();
    auto kp = make_kernels("cuda");
    CudaKernels& k = dynamic_cast<CudaKernels&>(*kp);
    Bench b{k, reps, nullptr, nullptr};
    check(cudaEventCreate(&b.e0), "event");
    check(cudaEventCreate(&b.e1), "event");
    int dev = 0, sms = 0;
    check(cudaGetDevice(&dev), "device");
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "attribute");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, dev), "properties");
    double bw = 0;  // device copy bandwidth, read + write counted
    {
      const int64_t n = int64_t(1) << 30;
      Tensor x = k.alloc({n}, DType::BF16), y = k.alloc({n}, DType::BF16);
      k.zero(x);
      k.copy(y, x);
      k.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < 10; ++r) k.copy(y, x);
      k.synchronize();
      bw = 2.0 * 2.0 * double(n) * 10 / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    std::printf("device: %s, %d SMs, L2 %d MB; copy bandwidth (read + write) %.0f GB/s; rule in force: %s\n",
                prop.name, sms, prop.l2CacheSize >> 20, bw / 1e9, in_force.str().c_str());

    const ModelConfig c = bench_shape_config(shape);
    const int64_t C = c.d_model, P = (c.n_heads + 2 * c.n_kv_heads) * c.head_dim;
    std::vector<Gemm> gemms = {{"qkv (packed, +bias)", P, C, c.qkv_bias, false, int(c.n_layers)},
                               {"o", C, c.n_heads * c.head_dim, false, false, int(c.n_layers)},
                               {"gate_up", 2 * c.ffn_dim, C, false, false, int(c.n_layers)},
                               {"down", C, c.ffn_dim, false, false, int(c.n_layers)}};
    if (head) gemms.push_back({"lm head (f32 logits)", c.vocab_size, C, false, true, 1});
    const std::vector<int> splits = bench_split_ints(splits_s);
    const std::vector<int> Ms = bench_split_ints(batches);
    Tensor ws = k.alloc({int64_t(lt::kMaxWorkspace / 4)}, DType::F32);

    struct Row {
      std::string gemm;
      int M;
      double mb, before, after, best, roof;
      std::string after_cfg, best_cfg;
      bool bitwise;
      double maxdiff;
    };
    std::vector<Row> rows;
    std::vector<std::string> rule_lines;
    double enum_s = 0;
    std::map<std::pair<int, std::string>, double> step_ms;  // (M, column) -> ms per step
    std::map<std::pair<size_t, int>, double> rule_ms;       // (rule, M) -> ms per step

    for (int M : Ms) {
      for (const Gemm& g : gemms) {
        const double wbytes = double(g.N) * g.K * 2 + (g.bias ? 2.0 * g.N : 0.0);
        const int copies = int(std::clamp<int64_t>(int64_t(std::ceil(256e6 / wbytes)), 1, 64));
        std::vector<Tensor> W;
        for (int i = 0; i < copies; ++i) W.push_back(randn(k, {g.N, g.K}, 1000 + uint64_t(i), 0.02, DType::BF16));
        Tensor A = randn(k, {int64_t(M), g.K}, 7, 1.0, DType::BF16);
        Tensor bias = randn(k, {g.N}, 11, 0.5, DType::BF16);
        Tensor out = k.alloc({int64_t(M), g.N}, g.f32_out ? DType::F32 : DType::BF16);
        auto backend_call = [&](int i) {
          if (g.f32_out)
            k.gemm(false, true, M, g.N, g.K, 1.0f, A.raw(), g.K, W[size_t(i % copies)].raw(), g.K, 0.0f, out.raw(),
                   DType::F32, g.N);
          else
            k.matmul_forward(out, A, W[size_t(i % copies)], g.bias ? &bias : nullptr);
        };
        // before: cublasGemmEx (and the bias broadcast)
        lt::set_rule(lt::parse_rule("off"));
        const double before = b.time_graph(copies, backend_call);
        backend_call(0);
        const Tensor ref = to_host(k, out);
        // after: the rule in force
        lt::set_rule(in_force);
        double after = 1e9, maxdiff = 0, maxref = 0;
        bool bitwise = false;
        try {
          after = b.time_graph(copies, backend_call);
          backend_call(0);
          const Tensor h1 = to_host(k, out);
          backend_call(0);
          const Tensor h2 = to_host(k, out);
          bitwise = std::memcmp(h1.raw(), h2.raw(), h1.nbytes()) == 0;
          for (int64_t i = 0; i < ref.numel(); ++i) {
            maxdiff = std::max(maxdiff, std::fabs(double(h1.data<float>()[i]) - ref.data<float>()[i]));
            maxref = std::max(maxref, std::fabs(double(ref.data<float>()[i])));
          }
        } catch (const std::exception& e) {
          std::printf("FAILED %s M=%d under the rule in force: %s\n", g.name.c_str(), M, e.what());
        }
        lt::Problem p;
        TEMPER_CHECK(lt::make_problem(M, g.N, g.K, g.f32_out, g.bias, A.raw(), g.K, W[0].raw(), g.K, out.raw(), g.N,
                                      bias.raw(), &p),
                     "bench_gemm_decode: unaligned buffers");
        std::string after_cfg = "cublasGemmEx";
        if (const lt::Plan* plan = lt::plan_for(p, dev, sms)) after_cfg = lt::describe(plan->cand);
        lt::Descs ds(p);
        auto lt_time = [&](const lt::Candidate& cand) {
          return b.time_graph(copies, [&](int i) {
            lt::run(ds, cand, A.raw(), W[size_t(i % copies)].raw(), out.raw(), g.bias ? bias.raw() : nullptr, 1.0f,
                    0.0f, ws.raw(), k.stream());
          });
        };
        // each configuration timed once (describe -> us; 1e9 where it fails); `fresh` counts the new ones
        std::map<std::string, double> timed;
        auto time_once = [&](const lt::Candidate& cand, const char* what, int* fresh) {
          const std::string cfg = lt::describe(cand);
          if (const auto it = timed.find(cfg); it != timed.end()) return it->second;
          double us = 1e9;
          try {
            us = lt_time(cand);
          } catch (const std::exception& e) {
            std::printf("FAILED %s M=%d %s%s: %s\n", g.name.c_str(), M, what, cfg.c_str(), e.what());
          }
          if (fresh) ++*fresh;
          return timed[cfg] = us;
        };
        // the rule variants
        for (size_t r = 0; r < rules.size(); ++r) {
          lt::Candidate cand;
          std::string cfg = "cublasGemmEx";
          double us = before;
          if (lt::choose(ds, sms, rules[r], &cand)) {
            cfg = lt::describe(cand);
            us = time_once(cand, "", nullptr);
          }
          char line[512];
          std::snprintf(line, sizeof line, "| %s | %d | %s | %.1f | %s |", g.name.c_str(), M, rule_specs[r].c_str(), us,
                        cfg.c_str());
          rule_lines.push_back(line);
          rule_ms[{r, M}] += us * g.per_step / 1e3;
          std::printf("JSON {\"bench\":\"gemm_decode_rule\",\"gemm\":\"%s\",\"M\":%d,\"rule\":\"%s\",\"us\":%.2f,"
                      "\"config\":\"%s\",\"calls\":%d}\n",
                      g.name.c_str(), M, rule_specs[r].c_str(), us, cfg.c_str(), g.per_step);
        }
        // every candidate
        double best = before;
        std::string best_cfg = "cublasGemmEx";
        if (enumerate) {
          const auto t_enum = std::chrono::steady_clock::now();
          const auto list = lt::heuristic(ds, top);
          int n = 0;
          for (const auto& base : list)
            for (int s : splits) {
              if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t_enum).count() >
                  enum_budget / double(Ms.size() * gemms.size()))
                break;
              if (s > 1 && g.K / s < 64) continue;
              lt::Candidate cand;
              if (!lt::with_split(ds, base, s, &cand)) continue;
              const double us = time_once(cand, "", &n);
              if (us < best) {
                best = us;
                best_cfg = "rank " + std::to_string(base.rank) + " " + lt::describe(cand);
              }
            }
          // the heuristic's own list, unchanged (its split choices included)
          for (const auto& cand : list) {
            const double us = time_once(cand, "listed ", nullptr);
            if (us < best) {
              best = us;
              best_cfg = "rank " + std::to_string(cand.rank) + " as listed " + lt::describe(cand);
            }
          }
          enum_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_enum).count();
          if (!list.empty())
            std::printf("(%s M=%d: heuristic #0 %s: %.1f us; %d candidates timed; enumeration so far %.1f s)\n",
                        g.name.c_str(), M, lt::describe(list[0]).c_str(), timed[lt::describe(list[0])], n, enum_s);
        }
        const double roof = wbytes / bw * 1e6;  // the weights read once at the copy bandwidth
        rows.push_back({g.name, M, wbytes / 1e6, before, after, best, roof, after_cfg, best_cfg, bitwise,
                        maxref > 0 ? maxdiff / maxref : maxdiff});
        std::printf("JSON {\"bench\":\"gemm_decode\",\"gemm\":\"%s\",\"M\":%d,\"N\":%lld,\"K\":%lld,\"weight_MB\":%.2f,"
                    "\"before_us\":%.2f,\"after_us\":%.2f,\"best_us\":%.2f,\"roofline_us\":%.2f,\"after\":\"%s\","
                    "\"best\":\"%s\",\"bitwise_repeat\":%s,\"max_rel_diff\":%.3g,\"copies\":%d}\n",
                    g.name.c_str(), M, (long long)g.N, (long long)g.K, wbytes / 1e6, before, after, best, roof,
                    after_cfg.c_str(), best_cfg.c_str(), bitwise ? "true" : "false",
                    maxref > 0 ? maxdiff / maxref : maxdiff, copies);
        std::fflush(stdout);
        for (auto [col, us] : {std::pair<const char*, double>{"before", before}, {"after", after}, {"best", best},
                               {"roof", roof}})
          step_ms[{M, col}] += us * g.per_step / 1e3;
      }
    }
    lt::set_rule(in_force);
    std::printf("\n| GEMM | M | weights MB | cublasGemmEx us | TB/s | rule us | TB/s | TFLOP/s | best us | roofline us "
                "| rule's choice | bitwise repeat | max rel diff to cublasGemmEx | fastest candidate |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|\n");
    for (const Row& r : rows) {
      const Gemm* g = nullptr;
      for (const Gemm& x : gemms)
        if (x.name == r.gemm) g = &x;
      const double flop = 2.0 * r.M * double(g->N) * g->K;
      std::printf("| %s | %d | %.1f | %.1f | %.2f | %.1f | %.2f | %.0f | %.1f | %.1f | %s | %s | %.2g | %s |\n",
                  r.gemm.c_str(), r.M, r.mb, r.before, r.mb / r.before, r.after, r.mb / r.after, flop / r.after / 1e6,
                  r.best, r.roof, r.after_cfg.c_str(), r.bitwise ? "yes" : "NO", r.maxdiff, r.best_cfg.c_str());
    }
    std::printf("\nper decode step (the GEMMs x their calls per step), ms:\n| M | cublasGemmEx | rule | best | "
                "roofline |\n|---:|---:|---:|---:|---:|\n");
    for (int M : Ms)
      std::printf("| %d | %.3f | %.3f | %.3f | %.3f |\n", M, step_ms[{M, "before"}], step_ms[{M, "after"}],
                  step_ms[{M, "best"}], step_ms[{M, "roof"}]);
    std::printf("\nrule variants (gemm_lt::choose under TEMPER_GEMM_LT=spec):\n| GEMM | M | rule | us | config |\n"
                "|---|---:|---|---:|---|\n");
    for (const auto& l : rule_lines) std::printf("%s\n", l.c_str());
    std::printf("\nrule variants per decode step, ms:\n| rule |");
    for (int M : Ms) std::printf(" M=%d |", M);
    std::printf("\n|---|");
    for (size_t i = 0; i < Ms.size(); ++i) std::printf("---:|");
    std::printf("\n");
    for (size_t r = 0; r < rules.size(); ++r) {
      std::printf("| %s |", rule_specs[r].c_str());
      for (int M : Ms) std::printf(" %.3f |", rule_ms[{r, M}]);
      std::printf("\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm_decode: error: %s\n", e.what());
    return 1;
  }
}

#else
int main() {
  std::printf("bench_gemm_decode: built without CUDA; nothing to measure\n");
  return 0;
}
#endif
