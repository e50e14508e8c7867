// bench_train: SFT training-step throughput of temper on random-init Qwen2
// shapes. Per (shape, seq): one packed sequence of seq tokens (one document)
// per step; forward + backward + global grad-norm clip + AdamW + refresh of the
// bf16 compute copy; warmup steps, then timed steps (synchronised wall time).
// Prints a table (tokens/s, step ms, MFU, peak memory, the memory plan's
// estimate, the loss of the first step at init, about ln V) and one JSON line
// per row for scripts; --profile adds the per-op breakdown of one extra step
// (ProfilingKernels), --memory the plan table. The model is built once per shape
// (Decoder's own random init; --seed picks the tokens) and reused across lengths.
//
// MFU = ModelConfig::flops_per_token(seq) * tokens/s / peak, i.e.
//   6 * (L * (q,k,v,o,gate_up,down weights) + V*C head) + 6 * L * H * D * (seq + 1)
// FLOPs per token (causal attention); peak defaults to the H100 SXM dense bf16
// 989 TFLOP/s. validation/bench/torch_train.py uses the same formula.
//
//   bench_train [--backend cuda|cpu] [--shapes qwen2-0.5b,qwen2-1.5b] [--seqs 4096,16384]
//               [--warmup 2] [--steps 5] [--peak-tflops 989] [--profile] [--memory] [--seed 1]
//               [--checkpointing none|selective|full] [--deterministic 1|0]
// --deterministic 0 runs the faster attention backward whose atomics vary the
// last bits (run.deterministic = false); the default 1 is what temper runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "kernels/cpu/profiling_kernels.h"
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "model/memory_plan.h"
#include "train/adamw.h"
#include "train/grad_clip.h"
#include "train/model_state.h"
#ifdef TEMPER_HAVE_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

using namespace temper;

namespace {

struct Args {
  std::string backend;  // empty: cuda when available, else cpu
  std::vector<std::string> shapes;
  std::vector<int64_t> seqs;
  int warmup = 2, steps = 5;
  double peak_tflops = 989.0;
  bool profile = false, memory = false;
  uint64_t seed = 1;
  std::string checkpointing = "none";  // none | selective | full (Decoder activation checkpointing)
  bool deterministic = true;           // Kernels::set_deterministic (run.deterministic)
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      TEMPER_CHECK(i + 1 < argc, "bench_train: ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--backend") a.backend = value();
    else if (k == "--shapes") a.shapes = split(value());
    else if (k == "--seqs") {
      a.seqs.clear();
      for (const auto& s : split(value())) a.seqs.push_back(std::stoll(s));
    } else if (k == "--warmup") a.warmup = std::stoi(value());
    else if (k == "--steps") a.steps = std::stoi(value());
    else if (k == "--peak-tflops") a.peak_tflops = std::stod(value());
    else if (k == "--seed") a.seed = std::stoull(value());
    else if (k == "--checkpointing") a.checkpointing = value();
    else if (k == "--deterministic") a.deterministic = std::stoi(value()) != 0;
    else if (k == "--profile") a.profile = true;
    else if (k == "--memory") a.memory = true;
    else if (k == "--help" || k == "-h") {
      std::printf(
          "bench_train [--backend cuda|cpu] [--shapes qwen2-0.5b,qwen2-1.5b,tiny] [--seqs 4096,16384]\n"
          "            [--warmup 2] [--steps 5] [--peak-tflops 989] [--profile] [--memory] [--seed 1]\n"
          "            [--checkpointing none|selective|full] [--deterministic 1|0]\n");
      std::exit(0);
    } else
      fail("bench_train: unknown argument '", k, "' (see --help)");
  }
  TEMPER_CHECK(a.steps >= 1 && a.warmup >= 0, "bench_train: --steps must be >= 1 and --warmup >= 0");
  return a;
}

// Random-init shapes (the published configs; rope/eps do not affect speed).
ModelConfig shape_config(const std::string& name) {
  ModelConfig c;
  c.rope_theta = 1e6f;
  c.norm_eps = 1e-6f;
  c.qkv_bias = true;
  c.tie_embeddings = true;
  if (name == "qwen2-0.5b") {
    c.vocab_size = 151936, c.d_model = 896, c.n_layers = 24, c.n_heads = 14, c.n_kv_heads = 2, c.head_dim = 64;
    c.ffn_dim = 4864;
  } else if (name == "qwen2-1.5b") {
    c.vocab_size = 151936, c.d_model = 1536, c.n_layers = 28, c.n_heads = 12, c.n_kv_heads = 2, c.head_dim = 128;
    c.ffn_dim = 8960;
  } else if (name == "tiny") {
    c.vocab_size = 512, c.d_model = 128, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 32;
    c.ffn_dim = 256;
  } else {
    fail("bench_train: unknown shape '", name, "' (qwen2-0.5b, qwen2-1.5b, tiny)");
  }
  c.validate();
  return c;
}

struct Row {
  std::string shape, status = "ok";
  int64_t seq = 0;
  double tokens_per_s = 0, step_ms = 0, step_ms_min = 0, mfu = 0, peak_gib = -1, plan_gib = 0, loss = NAN;
  int64_t params = 0;
};

double gib(double b) { return b / double(int64_t(1) << 30); }

#ifdef TEMPER_HAVE_CUDA
CudaKernels* as_cuda(Kernels& k) { return dynamic_cast<CudaKernels*>(&k); }
#endif

void release_cache(Kernels& base) {
#ifdef TEMPER_HAVE_CUDA
  if (auto* c = as_cuda(base)) c->allocator().release_cached();
#else
  (void)base;
#endif
}

std::string status_of(const Error& e) {
  const std::string msg = e.what();
  return msg.find("out of memory") != std::string::npos || msg.find("cudaMalloc") != std::string::npos ? "OOM"
                                                                                                       : "error";
}

// All rows of one shape. The model and optimizer are built once per shape (the
// random init runs on the host and takes tens of seconds for these sizes) and
// the sequence lengths run in ascending order. Before a row is timed, one step
// at its length grows the activation buffers and the allocator's cache is
// released, so the row's peak is its own (parameters, optimizer, activations,
// transients of one step at that length).
std::vector<Row> run_shape(Kernels& base, const Args& a, const std::string& shape, std::vector<int64_t> seqs) {
  std::sort(seqs.begin(), seqs.end());
  const ModelConfig cfg = shape_config(shape);
  std::vector<Row> rows;
  for (int64_t seq : seqs) {
    Row r;
    r.shape = shape;
    r.seq = seq;
    r.params = cfg.param_count();
    MemoryPlanOptions mo;
    mo.tokens = seq;
    mo.compute_dtype = base.act_dtype();
    mo.checkpointing = checkpointing_from_name(a.checkpointing);
    r.plan_gib = gib(double(MemoryPlan(cfg, mo).total()));
    rows.push_back(r);
  }
  release_cache(base);
  std::unique_ptr<ProfilingKernels> k;
  std::unique_ptr<Decoder> model;
  std::unique_ptr<AdamW> opt;
  double init_loss = NAN;
  try {
    k = std::make_unique<ProfilingKernels>(base, false);
    model = std::make_unique<Decoder>(cfg, *k, DType::F32);  // random init (seed 0) in the constructor
    model->set_checkpointing(checkpointing_from_name(a.checkpointing));
    AdamWConfig oc;
    oc.weight_decay = 0.1;
    opt = std::make_unique<AdamW>(*k, param_refs(*model), oc);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_train: %s: %s\n", shape.c_str(), e.what());
    for (Row& r : rows) r.status = status_of(e);
    return rows;
  }
  for (Row& row : rows) {
    const int64_t seq = row.seq;
    try {
      Rng rng(mix64(a.seed, uint64_t(seq)));
      std::vector<int32_t> doc(static_cast<size_t>(seq));
      for (auto& t : doc) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));
      std::vector<int32_t> targets(doc.begin() + 1, doc.end());
      targets.push_back(-1);
      Batch b = make_lm_batch(*k, {doc}, cfg.vocab_size);
      Tensor dlogp = sft_dlogp(*k, targets, double(seq - 1), DType::F32);
      Tensor logp = k->alloc({seq}, DType::F32);
      auto step = [&]() {
        model->zero_grad();
        model->forward_backward(b, dlogp, logp);
        const double norm = grad_norm(*k, opt->params());
        opt->step(1e-5, clip_scale(norm, 1.0));
        if (!opt->refreshes_compute()) model->refresh_compute();  // AdamW writes the bf16 copies itself
        k->synchronize();
      };
      step();  // buffers for this length
      if (std::isnan(init_loss)) {  // the shape's first step: loss at init (about ln V)
        double nll = 0;
        for (double v : to_host_f64(*k, logp)) nll -= v;
        init_loss = nll / double(seq - 1);
      }
      release_cache(base);
      using Clock = std::chrono::steady_clock;
      for (int i = 0; i < a.warmup; ++i) step();
      std::vector<double> ms;
      for (int i = 0; i < a.steps; ++i) {
        const auto t0 = Clock::now();
        step();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      double sum = 0;
      for (double x : ms) sum += x;
      row.step_ms = sum / double(ms.size());
      row.step_ms_min = *std::min_element(ms.begin(), ms.end());
      row.tokens_per_s = double(seq) / (row.step_ms / 1e3);
      row.mfu = cfg.flops_per_token(seq) * row.tokens_per_s / (a.peak_tflops * 1e12);
      row.loss = init_loss;
#ifdef TEMPER_HAVE_CUDA
      if (auto* c = as_cuda(base)) row.peak_gib = gib(double(c->reserved_bytes()));
#endif
      if (a.memory) {
        MemoryPlanOptions mo;
        mo.tokens = seq;
        mo.compute_dtype = base.act_dtype();
        mo.checkpointing = checkpointing_from_name(a.checkpointing);
        const int64_t measured = row.peak_gib >= 0 ? int64_t(row.peak_gib * double(int64_t(1) << 30)) : -1;
        std::printf("\nmemory plan, %s seq %lld:\n%s", shape.c_str(), static_cast<long long>(seq),
                    MemoryPlan(cfg, mo).table(measured).c_str());
      }
      if (a.profile) {
        k->reset();
        k->set_enabled(true);
        step();
        k->set_enabled(false);
        std::printf("\n%s", k->report(cat("per-op time of one step, ", shape, " seq ", seq, " (", base.name(),
                                          ", synchronised per op)"))
                                .c_str());
      }
    } catch (const Error& e) {
      row.status = status_of(e);
      std::fprintf(stderr, "bench_train: %s seq %lld: %s\n", shape.c_str(), static_cast<long long>(seq), e.what());
    }
    std::fflush(stdout);
  }
  opt.reset();
  model.reset();
  release_cache(base);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args a = parse(argc, argv);
    std::unique_ptr<Kernels> k;
    if (a.backend.empty() || a.backend == "cuda") {
      try {
        k = make_cuda_kernels(0);
      } catch (const Error& e) {
        if (a.backend == "cuda") throw;
        std::fprintf(stderr, "bench_train: no CUDA backend (%s); using cpu with the tiny shape\n", e.what());
      }
    }
    if (!k) {
      k = make_cpu_kernels();
      if (a.shapes.empty()) a.shapes = {"tiny"};
      if (a.seqs.empty()) a.seqs = {256};
      for (const auto& s : a.shapes)
        TEMPER_CHECK(s == "tiny", "bench_train: the cpu backend runs only the tiny shape (asked for ", s, ")");
    }
    k->set_deterministic(a.deterministic);
    if (a.shapes.empty()) a.shapes = {"qwen2-0.5b", "qwen2-1.5b"};
    if (a.seqs.empty()) a.seqs = {4096, 16384};

    std::vector<Row> rows;
    for (const auto& s : a.shapes)
      for (const Row& r : run_shape(*k, a, s, a.seqs)) {
        rows.push_back(r);
        nlohmann::json j = {{"impl", "temper"},         {"backend", k->name()},  {"shape", r.shape},
                            {"seq", r.seq},              {"status", r.status},    {"tokens_per_s", r.tokens_per_s},
                            {"step_ms", r.step_ms},      {"step_ms_min", r.step_ms_min}, {"mfu", r.mfu},
                            {"peak_gib", r.peak_gib},    {"plan_gib", r.plan_gib}, {"loss", r.loss},
                            {"params", r.params},        {"warmup", a.warmup},    {"steps", a.steps}};
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
      }
    std::printf("\ntemper (%s), %d warmup + %d timed steps, one packed sequence per step, MFU vs %.0f TFLOP/s\n",
                k->name().c_str(), a.warmup, a.steps, a.peak_tflops);
    std::printf("| shape | seq | tokens/s | step ms | MFU %% | peak GiB | plan GiB | init loss |\n");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const Row& r : rows) {
      if (r.status != "ok") {
        std::printf("| %s | %lld | %s | | | | %.2f | |\n", r.shape.c_str(), static_cast<long long>(r.seq),
                    r.status.c_str(), r.plan_gib);
        continue;
      }
      std::printf("| %s | %lld | %.0f | %.1f | %.1f | %s | %.2f | %.3f |\n", r.shape.c_str(),
                  static_cast<long long>(r.seq), r.tokens_per_s, r.step_ms, 100.0 * r.mfu,
                  r.peak_gib >= 0 ? cat(std::round(r.peak_gib * 100) / 100).c_str() : "n/a", r.plan_gib, r.loss);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
}
