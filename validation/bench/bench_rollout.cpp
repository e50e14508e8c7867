// Rollout throughput of temper's generation engine (KV cache, continuous
// batching, decode steps replayed as CUDA graphs, on-device sampling) on
// random-init Qwen2 shapes: `batch` prompts of `prompt_len` random tokens,
// `new_tokens` sampled each (no stop token, so every sequence runs to the
// budget), temperature 1. Per row it prints:
//   - generated tokens/s with decode graphs (the default) and call by call, and HF
//     generate's tokens/s measured in the same run (--torch SCRIPT runs
//     validation/bench/torch_generate.py with the same shapes first);
//   - the decode step's split, timed on its own engine at the mean context
//     length prompt + new/2: forward call by call, forward as a graph, the
//     decode attention alone (all layers) with the bandwidth it reaches, and
//     sampling;
//   - the bytes one decode step must move (weights + KV cache at the mean
//     context + logits written and read once) and the roofline tokens/s they
//     allow at the copy bandwidth measured here (a device-to-device copy), with
//     the fraction the generate run reaches (its time includes the prefill);
//   - the distribution of |logp_rollout - logp_trainer| over the sampled tokens of
//     the first 16 sequences (the trainer's Decoder::forward on prompt + response).
// One JSON line per row as well (for validation/bench/run_bench.sh).
//   bench_rollout [--backend cuda|cpu] [--shapes qwen2-1.5b] [--batches 64,256,1024]
//                 [--prompt-len 128] [--new-tokens 256] [--torch torch_generate.py]
//                 [--torch-batches 64,256 (default: --batches)]
//                 [--no-eager] [--no-split] [--ops] [--group P,G,L] [--sampler 1,64,256,1024]
// --ops adds, per batch, the decode step's cost op by op (each op of one layer timed
// alone at the batch and context of the split, times its calls per step).
// --group P,G,L adds group sampling's prefill: P prompts of L random tokens with G samples
// each (the prompt prefilled once, its cache rows copied to the group's other slots) against
// the same P*G sequences given as separate prompts (each prefilled), 1 new token each.
// --sampler B,... adds sample_tokens alone on random bf16 and f32 logits at those batches
// (plain draw, greedy, radix search).
// --batches '' skips the throughput rows.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "model/inference.h"
#include "rl/generation.h"
#include "validation/bench/bench_shapes.h"

using namespace temper;

namespace {
using Clock = std::chrono::steady_clock;

// Milliseconds per call of f, over reps calls after one untimed call.
template <class F>
double ms_per_call(Kernels& k, int reps, F&& f) {
  f();
  k.synchronize();
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) f();
  k.synchronize();
  return 1e3 * std::chrono::duration<double>(Clock::now() - t0).count() / reps;
}

// Device copy bandwidth in bytes/s (read + write of a large buffer).
double copy_bandwidth(Kernels& k) {
  const int64_t n = k.device() == Device::CUDA ? (int64_t(1) << 29) : (int64_t(1) << 24);  // bf16/f32 elements
  const DType dt = k.act_dtype();
  Tensor a = k.alloc({n}, dt), b = k.alloc({n}, dt);
  k.zero(a);
  const double ms = ms_per_call(k, 5, [&] { k.copy(b, a); });
  return 2.0 * double(a.nbytes()) / (ms * 1e-3);
}

// HF generate tokens/s per (shape, batch), from the JSON lines of the torch script.
std::map<std::pair<std::string, int>, double> run_torch(const std::string& script, const std::string& shapes,
                                                        const std::string& batches, int prompt_len, int new_tokens) {
  std::map<std::pair<std::string, int>, double> out;
  const std::string cmd = "python3 " + script + " --shapes " + shapes + " --batches " + batches + " --prompt-len " +
                          std::to_string(prompt_len) + " --new-tokens " + std::to_string(new_tokens) + " 2>&1";
  std::printf("reference: %s\n", cmd.c_str());
  std::fflush(stdout);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    std::printf("reference: could not start python3\n");
    return out;
  }
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    std::printf("  hf> %s", line);
    const std::string s(line);
    if (s.rfind("JSON ", 0) != 0) continue;
    auto field = [&](const std::string& key) -> std::string {
      const size_t at = s.find("\"" + key + "\": ");
      if (at == std::string::npos) return "";
      size_t b = at + key.size() + 4, e = b;
      while (e < s.size() && s[e] != ',' && s[e] != '}') ++e;
      std::string v = s.substr(b, e - b);
      v.erase(std::remove(v.begin(), v.end(), '"'), v.end());
      return v;
    };
    const std::string shape = field("shape"), batch = field("batch"), tps = field("tokens_per_s");
    if (!shape.empty() && !batch.empty() && !tps.empty()) out[{shape, std::stoi(batch)}] = std::stod(tps);
  }
  const int rc = pclose(p);
  if (rc != 0) std::printf("reference: python3 exited with status %d\n", rc);
  return out;
}

struct Row {
  std::string shape;
  int batch = 0;
  double tps = 0, tps_eager = 0, tps_hf = 0, step_ms = 0;
  double fwd_eager_ms = 0, fwd_graph_ms = 0, attn_ms = 0, attn_gbs = 0, sample_ms = 0, sample_radix_ms = 0;
  double prefill_s = 0;
  double step_mb = 0, weight_mb = 0, kv_mb = 0, roofline_tps = 0;
  double dlogp_median = 0, dlogp_p99 = 0, dlogp_max = 0;
  int64_t dlogp_n = 0;
};

// |rollout logp - trainer logp| over the response tokens of the first `count` samples.
void logp_agreement(Kernels& k, Decoder& model, const std::vector<std::vector<int32_t>>& prompts,
                    const std::vector<GeneratedSample>& out, size_t count, Row& r) {
  std::vector<std::vector<int32_t>> docs;
  std::vector<const GeneratedSample*> who;
  for (size_t i = 0; i < std::min(count, out.size()); ++i) {
    std::vector<int32_t> d = prompts[size_t(out[i].prompt_index)];
    d.insert(d.end(), out[i].tokens.begin(), out[i].tokens.end());
    docs.push_back(d);
    who.push_back(&out[i]);
  }
  Batch b = make_lm_batch(k, docs, model.config().vocab_size);
  Tensor logp;
  model.forward(b, logp);
  Tensor host = Tensor::empty({logp.numel()}, logp.dtype());
  k.copy(host, logp);
  auto at_logp = [&](int64_t i) {
    return host.dtype() == DType::F64 ? host.data<double>()[i] : double(host.data<float>()[i]);
  };
  std::vector<double> d;
  int64_t at = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    const int64_t P = int64_t(prompts[size_t(who[i]->prompt_index)].size());
    for (size_t j = 0; j < who[i]->tokens.size(); ++j)  // token j of the response is the target of position P-1+j
      d.push_back(std::fabs(at_logp(at + P - 1 + int64_t(j)) - who[i]->logp[j]));
    at += int64_t(docs[i].size());
  }
  std::sort(d.begin(), d.end());
  if (d.empty()) return;
  r.dlogp_n = int64_t(d.size());
  r.dlogp_median = d[d.size() / 2];
  r.dlogp_p99 = d[std::min(d.size() - 1, size_t(0.99 * double(d.size())))];
  r.dlogp_max = d.back();
}

// The decode step's split at batch B and context length ctx, on an engine of its own.
void step_split(Kernels& k, Decoder& model, int B, int ctx, Row& r) {
  const ModelConfig& c = model.config();
  InferenceEngine eng(model, k, B, ctx + 1);
  Rng rng(11);
  std::vector<int> slots(static_cast<size_t>(B));
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B), std::vector<int32_t>(static_cast<size_t>(ctx)));
  for (int i = 0; i < B; ++i) {
    slots[size_t(i)] = i;
    for (auto& t : prompts[size_t(i)]) t = int32_t(rng.below(uint64_t(c.vocab_size)));
  }
  eng.prefill(slots, prompts);
  std::vector<int32_t> toks(static_cast<size_t>(B), 1), pos(static_cast<size_t>(B), ctx);
  eng.set_use_graphs(false);
  r.fwd_eager_ms = ms_per_call(k, 10, [&] { eng.decode(slots, toks, pos); });
  eng.set_use_graphs(true);
  Tensor logits;
  r.fwd_graph_ms = ms_per_call(k, 10, [&] { logits = eng.decode(slots, toks, pos); });
  // sampling (temperature 1, no truncation) of the logits
  Tensor u = k.alloc({int64_t(B)}, DType::F32), tok = k.alloc({int64_t(B)}, DType::I32);
  Tensor lp = k.alloc({int64_t(B)}, DType::F32);
  Tensor hu = Tensor::empty({int64_t(B)}, DType::F32);
  for (int i = 0; i < B; ++i) hu.data<float>()[i] = float(i) / float(B);
  k.copy(u, hu);
  if (logits.dtype() == DType::BF16 || logits.dtype() == DType::F32) {
    r.sample_ms = ms_per_call(k, 10, [&] { k.sample_tokens(tok, lp, logits, u, 1.0f, 0, 1.0f); });
    const char* was = std::getenv("TEMPER_SAMPLER");
    const std::string saved = was ? was : "";
    setenv("TEMPER_SAMPLER", "radix", 1);  // the cuda backend's radix search, for comparison
    r.sample_radix_ms = ms_per_call(k, 10, [&] { k.sample_tokens(tok, lp, logits, u, 1.0f, 0, 1.0f); });
    if (was) setenv("TEMPER_SAMPLER", saved.c_str(), 1);
    else unsetenv("TEMPER_SAMPLER");
  }
  // decode attention alone: all layers' worth of attention_cached at length ctx
  const int64_t H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim;
  Tensor kc = k.alloc({int64_t(B), int64_t(ctx + 1), KVH, D}, k.act_dtype());
  Tensor vc = k.alloc({int64_t(B), int64_t(ctx + 1), KVH, D}, k.act_dtype());
  Tensor q = k.alloc({int64_t(B), H, D}, k.act_dtype()), o = k.alloc({int64_t(B), H, D}, k.act_dtype());
  k.zero(kc);
  k.zero(vc);
  k.zero(q);
  Tensor hs = Tensor::empty({int64_t(B)}, DType::I32), hp = Tensor::empty({int64_t(B)}, DType::I32);
  for (int i = 0; i < B; ++i) {
    hs.data<int32_t>()[i] = i;
    hp.data<int32_t>()[i] = ctx;
  }
  Tensor ds = k.alloc({int64_t(B)}, DType::I32), dp = k.alloc({int64_t(B)}, DType::I32);
  k.copy(ds, hs);
  k.copy(dp, hp);
  auto attn_all_layers = [&] {
    for (int l = 0; l < c.n_layers; ++l) k.attention_cached(o, q, kc, vc, ds, dp);
  };
  r.attn_ms = ms_per_call(k, 3, attn_all_layers);
  const double kv_bytes = 2.0 * c.n_layers * double(B) * (ctx + 1) * double(KVH * D) * dtype_size(k.act_dtype());
  r.attn_gbs = kv_bytes / (r.attn_ms * 1e-3) / 1e9;
}

// Per-op cost of one decode step at batch B (context ctx): each op of one layer
// timed alone (reps back-to-back calls on the same buffers, no graph), times its
// calls per step. The sum next to the graph forward shows what fusion or better
// kernels could gain; GEMM rows give the weight bandwidth they reach.
struct OpRow {
  std::string op;
  int per_step = 0;
  double us = 0, bytes = 0;
};
std::vector<OpRow> op_table(Kernels& k, Decoder& model, int B, int ctx, double attn_ms, double sample_ms) {
  const ModelConfig& c = model.config();
  const int64_t N = B, C = c.d_model, H = c.n_heads, KVH = c.n_kv_heads, D = c.head_dim, F = c.ffn_dim,
                V = c.vocab_size, L = c.n_layers;
  const DType dt = model.compute_dtype();
  const int64_t es = int64_t(dtype_size(dt));
  auto W = [&](const std::string& n) -> const Tensor& { return model.param(n).compute; };
  Tensor x = k.alloc({N, C}, dt), ln = k.alloc({N, C}, dt), rstd = k.alloc({N}, model.stat_dtype());
  Tensor q = k.alloc({N, H, D}, dt);
  Tensor gu = k.alloc({N, 2 * F}, dt), act = k.alloc({N, F}, dt), proj = k.alloc({N, C}, dt);
  Tensor logits = k.alloc({N, V}, dt);
  Tensor kc = k.alloc({N, int64_t(ctx + 1), KVH, D}, dt), vc = k.alloc({N, int64_t(ctx + 1), KVH, D}, dt);
  for (Tensor* t : {&x, &ln, &q, &gu, &act, &proj}) k.zero(*t);
  Tensor hs = Tensor::empty({N}, DType::I32), hp = Tensor::empty({N}, DType::I32);
  for (int64_t i = 0; i < N; ++i) {
    hs.data<int32_t>()[i] = int32_t(i);
    hp.data<int32_t>()[i] = ctx;
  }
  Tensor slot = k.alloc({N}, DType::I32), pos = k.alloc({N}, DType::I32);
  k.copy(slot, hs);
  k.copy(pos, hp);
  const std::string l0 = "layers.0.";
  std::vector<OpRow> rows;
  const int reps = 50;
  auto time = [&](const std::string& name, int per_step, double bytes, auto&& f) {
    rows.push_back({name, per_step, 1e3 * ms_per_call(k, reps, f), bytes});
  };
  const double act_b = double(N * C * es);
  // the engine's packed q|k|v projection (model/inference.h)
  const int64_t P = (H + 2 * KVH) * D;
  Tensor qkv_w = k.alloc({P, C}, dt), qkv = k.alloc({N, H + 2 * KVH, D}, dt);
  k.zero(qkv_w);
  k.zero(qkv);
  Tensor qkv_b;
  if (c.qkv_bias) {
    qkv_b = k.alloc({P}, dt);
    k.zero(qkv_b);
  }
  Tensor qkv_lin = qkv.reshape({N, P});
  time("embedding", 1, 2 * act_b, [&] { k.embedding_forward(x, slot, W("embed")); });
  time("add + rmsnorm (fused)", int(2 * L), 4 * act_b,
       [&] { k.add_rmsnorm_forward(x, proj, ln, rstd, W(l0 + "attn_norm.weight"), c.norm_eps); });
  time("matmul qkv (packed, +bias)", int(L), double(P * C * es),
       [&] { k.matmul_forward(qkv_lin, ln, qkv_w, c.qkv_bias ? &qkv_b : nullptr); });
  time("qkv_rope_cache_write", int(L), double(N * (P + H * D + 2 * KVH * D) * es),
       [&] { k.qkv_rope_cache_write(q, qkv, kc, vc, slot, pos, c.rope_theta); });
  rows.push_back({"attention_cached", int(L), 1e3 * attn_ms / double(L),
                  2.0 * double(N) * (ctx + 1) * double(KVH * D * es)});
  time("matmul o", int(L), double(W(l0 + "attn.o.weight").nbytes()),
       [&] { k.matmul_forward(proj, q.reshape({N, H * D}), W(l0 + "attn.o.weight"), nullptr); });
  time("matmul gate_up", int(L), double(W(l0 + "mlp.gate_up.weight").nbytes()),
       [&] { k.matmul_forward(gu, ln, W(l0 + "mlp.gate_up.weight"), nullptr); });
  time("swiglu", int(L), 3.0 * double(N * F * es), [&] { k.swiglu_forward(act, gu); });
  time("matmul down", int(L), double(W(l0 + "mlp.down.weight").nbytes()),
       [&] { k.matmul_forward(proj, act, W(l0 + "mlp.down.weight"), nullptr); });
  const Tensor& head = W(c.tie_embeddings ? "embed" : "lm_head.weight");
  time("final rmsnorm + lm head", 1, double(head.nbytes()) + double(N * V * es), [&] {
    k.rmsnorm_forward(ln, rstd, x, W("final_norm.weight"), c.norm_eps);
    k.matmul_forward(logits, ln, head, nullptr);
  });
  rows.push_back({"sample_tokens", 1, 1e3 * sample_ms, double(N * V * es)});
  return rows;
}

void print_op_table(const std::string& shape, int B, int ctx, const std::vector<OpRow>& rows, double fwd_graph_ms) {
  double total = 0;
  for (const OpRow& r : rows) total += r.us * r.per_step / 1e3;
  std::printf("\ndecode step by op, %s batch %d context %d (each op timed alone, no graph; forward + sampling as "
              "graph + call: %.2f ms)\n| op | calls/step | us/call | ms/step | GB/s | share of sum |\n"
              "|---|---:|---:|---:|---:|---:|\n",
              shape.c_str(), B, ctx, fwd_graph_ms);
  for (const OpRow& r : rows)
    std::printf("| %s | %d | %.1f | %.3f | %.0f | %.1f %% |\n", r.op.c_str(), r.per_step, r.us, r.us * r.per_step / 1e3,
                r.bytes / (r.us * 1e-6) / 1e9, 100.0 * r.us * r.per_step / 1e3 / std::max(total, 1e-30));
  std::printf("| sum | | | %.3f | | |\n", total);
  for (const OpRow& r : rows)
    std::printf("JSON {\"bench\":\"rollout_ops\",\"shape\":\"%s\",\"batch\":%d,\"ctx\":%d,\"op\":\"%s\",\"calls\":%d,"
                "\"us\":%.2f}\n", shape.c_str(), B, ctx, r.op.c_str(), r.per_step, r.us);
}
// Group sampling's prefill (--group): shared (n_samples = G) vs unshared (P*G prompts).
void group_prefill(Kernels& k, Decoder& model, const std::string& shape, int P, int G, int L) {
  const ModelConfig& c = model.config();
  Rng rng(5);
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(P), std::vector<int32_t>(static_cast<size_t>(L)));
  for (auto& p : prompts)
    for (auto& t : p) t = int32_t(rng.below(uint64_t(c.vocab_size)));
  std::vector<std::vector<int32_t>> each;
  for (const auto& p : prompts)
    for (int g = 0; g < G; ++g) each.push_back(p);
  std::printf("\ngroup sampling prefill, %s: %d prompts x %d samples, %d-token prompts, 1 new token\n"
              "| prompts given | samples each | prefill tokens | prefill s | generate s (prefill + cache copies) |\n"
              "|---:|---:|---:|---:|---:|\n",
              shape.c_str(), P, G, L);
  double sec[2] = {0, 0};
  for (int pass = 0; pass < 2; ++pass) {
    Generator gen(model, k, P * G, nullptr, L + 1);
    SamplingOptions so;
    so.max_new_tokens = 1;
    so.temperature = 1.0f;
    so.seed = 3;
    so.n_samples = pass == 0 ? G : 1;
    const auto& in = pass == 0 ? prompts : each;
    gen.generate(in, so);  // warm-up: allocates the engine
    k.synchronize();
    const auto t0 = Clock::now();
    gen.generate(in, so);
    k.synchronize();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const GenerationStats& st = gen.last_stats();
    sec[pass] = s;
    std::printf("| %zu | %d | %lld | %.3f | %.3f |\n", in.size(), so.n_samples,
                static_cast<long long>(st.prefill_tokens), st.prefill_seconds, s);
    std::printf("JSON {\"bench\":\"rollout_group_prefill\",\"shape\":\"%s\",\"prompts\":%zu,\"samples\":%d,"
                "\"prompt_len\":%d,\"prefill_tokens\":%lld,\"prefill_s\":%.4f,\"generate_s\":%.4f}\n",
                shape.c_str(), in.size(), so.n_samples, L, static_cast<long long>(st.prefill_tokens),
                st.prefill_seconds, s);
    std::fflush(stdout);
  }
  std::printf("shared / unshared generate time: %.3f (1/G = %.3f)\n", sec[0] / std::max(sec[1], 1e-30), 1.0 / G);
}
// sample_tokens alone on random logits (N(0, sd^2), V = Qwen2's vocabulary) at each batch:
// the plain draw (temperature 1, no top-k / top-p), greedy, and the radix search
// (TEMPER_SAMPLER=radix) in the same run; GB/s counts one read of the logits.
void sampler_table(Kernels& k, const std::vector<std::string>& batches, double bw) {
  const int64_t V = 151936;
  std::printf("\nsample_tokens alone, V %lld, logits ~ N(0, sd^2) (ms per call with its sync; GB/s: one read of the "
              "logits, copy bandwidth %.0f GB/s)\n| dtype | sd | batch | plain draw ms | GB/s | greedy ms | radix search ms |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n",
              static_cast<long long>(V), bw / 1e9);
  for (DType dt : {DType::BF16, DType::F32})
    for (double sd : {1.0, 4.0})
      for (const auto& bs : batches) {
        const int64_t B = std::stoll(bs);
        Tensor x = k.alloc({B, V}, DType::F32);
        k.fill_normal(x, 5, 0, sd);
        if (dt != DType::F32) {
          Tensor y = k.alloc({B, V}, dt);
          k.copy(y, x);
          x = y;
        }
        Tensor hu = Tensor::empty({B}, DType::F32);
        for (int64_t i = 0; i < B; ++i) hu.data<float>()[i] = float((double(i) + 0.5) / double(B));
        Tensor u = k.alloc({B}, DType::F32), tok = k.alloc({B}, DType::I32), lp = k.alloc({B}, DType::F32);
        k.copy(u, hu);
        const double ms = ms_per_call(k, 20, [&] { k.sample_tokens(tok, lp, x, u, 1.0f, 0, 1.0f); });
        const double greedy_ms = ms_per_call(k, 20, [&] { k.sample_tokens(tok, lp, x, u, 0.0f, 0, 1.0f); });
        setenv("TEMPER_SAMPLER", "radix", 1);
        const double radix_ms = ms_per_call(k, 5, [&] { k.sample_tokens(tok, lp, x, u, 1.0f, 0, 1.0f); });
        unsetenv("TEMPER_SAMPLER");
        const double gbs = double(x.nbytes()) / (ms * 1e-3) / 1e9;
        std::printf("| %s | %.0f | %lld | %.3f | %.0f | %.3f | %.3f |\n", dtype_name(dt), sd, static_cast<long long>(B),
                    ms, gbs, greedy_ms, radix_ms);
        std::printf("JSON {\"bench\":\"rollout_sampler\",\"dtype\":\"%s\",\"sd\":%.1f,\"batch\":%lld,\"plain_ms\":%.4f,"
                    "\"greedy_ms\":%.4f,\"radix_ms\":%.4f}\n",
                    dtype_name(dt), sd, static_cast<long long>(B), ms, greedy_ms, radix_ms);
      }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string backend = "cuda", shapes = "qwen2-1.5b", batches = "64,256,1024", torch_script, torch_batches;
    int prompt_len = 128, new_tokens = 256;
    bool eager = true, do_split = true, do_ops = false;
    int group_p = 0, group_g = 0, group_l = 0;
    std::string sampler_batches;
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
      else if (a == "--torch") torch_script = val();
      else if (a == "--torch-batches") torch_batches = val();
      else if (a == "--no-eager") eager = false;
      else if (a == "--no-split") do_split = false;
      else if (a == "--ops") do_ops = true;
      else if (a == "--sampler") sampler_batches = val();
      else if (a == "--group") {
        const auto v = bench_split(val());
        TEMPER_CHECK(v.size() == 3, "bench_rollout: --group takes P,G,L (prompts, samples each, prompt length)");
        group_p = std::stoi(v[0]);
        group_g = std::stoi(v[1]);
        group_l = std::stoi(v[2]);
        TEMPER_CHECK(group_p > 0 && group_g > 0 && group_l > 0, "bench_rollout: --group values must be positive");
      }
      else fail("bench_rollout: unknown option ", a);
    }
    TEMPER_CHECK(prompt_len >= 1 && new_tokens >= 2, "bench_rollout: --prompt-len must be >= 1, --new-tokens >= 2");
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a log even if the run is stopped
    std::map<std::pair<std::string, int>, double> hf;
    if (!torch_script.empty())
      hf = run_torch(torch_script, shapes, torch_batches.empty() ? batches : torch_batches, prompt_len, new_tokens);
    auto k = make_kernels(backend);
    const double bw = copy_bandwidth(*k);
    std::printf("device copy bandwidth (read + write): %.0f GB/s\n", bw / 1e9);
    if (!sampler_batches.empty()) sampler_table(*k, bench_split(sampler_batches), bw);
    std::vector<Row> rows;
    for (const auto& shape : bench_split(batches).empty() ? std::vector<std::string>{} : bench_split(shapes)) {
      const ModelConfig cfg = bench_shape_config(shape);
      Decoder model(cfg, *k, DType::F32);
      model.init_random(1);
      double weight_bytes = 0;
      for (const auto& p : model.params()) weight_bytes += double(p.compute.nbytes());
      for (const auto& bs : bench_split(batches)) {
        Row r;
        r.shape = shape;
        r.batch = std::stoi(bs);
        const int B = r.batch;
        Rng rng(7);
        std::vector<std::vector<int32_t>> prompts(size_t(B), std::vector<int32_t>(size_t(prompt_len), 0));
        for (auto& p : prompts)
          for (auto& t : p) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));
        SamplingOptions so;
        so.max_new_tokens = new_tokens;
        so.temperature = 1.0f;
        so.seed = 3;
        SamplingOptions warm = so;  // a short run allocates the engine and records the graphs
        warm.max_new_tokens = 4;
        // pass 0: decode steps as graphs (the default); 1: call by call
        for (int pass = 0; pass < (eager ? 2 : 1); ++pass) {
          const char* names[] = {"graphs", "eager"};
          try {
            Generator gen(model, *k, B, nullptr, prompt_len + new_tokens);
            gen.set_decode_graphs(pass == 0);
            gen.generate(prompts, warm);
            k->synchronize();
            const auto t0 = Clock::now();
            auto out = gen.generate(prompts, so);
            k->synchronize();
            const double s = std::chrono::duration<double>(Clock::now() - t0).count();
            int64_t toks = 0;
            for (const auto& g : out) toks += int64_t(g.tokens.size());
            const GenerationStats& st = gen.last_stats();
            std::printf("  %s batch %d %s: %s\n", shape.c_str(), B, names[pass], st.line().c_str());
            if (pass == 0) {
              r.tps = double(toks) / s;
              r.prefill_s = st.prefill_seconds;
              r.step_ms = st.decode_steps > 0 ? 1e3 * (st.seconds - st.prefill_seconds) / double(st.decode_steps) : 0;
              logp_agreement(*k, model, prompts, out, 16, r);
            } else {
              r.tps_eager = double(toks) / s;
            }
          } catch (const std::exception& e) {
            std::printf("  %s batch %d %s: error: %s\n", shape.c_str(), B, names[pass], e.what());
          }
        }
        const int ctx = prompt_len + new_tokens / 2;
        if (do_split) step_split(*k, model, B, ctx, r);
        if (do_split && do_ops)
          print_op_table(shape, B, ctx, op_table(*k, model, B, ctx, r.attn_ms, r.sample_ms), r.fwd_graph_ms + r.sample_ms);
        r.weight_mb = weight_bytes / 1e6;
        r.kv_mb = 2.0 * cfg.n_layers * double(B) * ctx * double(cfg.n_kv_heads) * cfg.head_dim *
                  dtype_size(k->act_dtype()) / 1e6;
        const double logits_mb = 2.0 * double(B) * cfg.vocab_size * dtype_size(k->act_dtype()) / 1e6;
        r.step_mb = r.weight_mb + r.kv_mb + logits_mb;
        r.roofline_tps = double(B) * bw / (r.step_mb * 1e6);
        auto it = hf.find({shape, B});
        if (it != hf.end()) r.tps_hf = it->second;
        rows.push_back(r);
        std::printf("JSON {\"bench\":\"rollout\",\"impl\":\"temper\",\"shape\":\"%s\",\"batch\":%d,\"prompt_len\":%d,"
                    "\"new_tokens\":%d,\"tokens_per_s\":%.1f,\"eager_tokens_per_s\":%.1f,\"hf_tokens_per_s\":%.1f,"
                    "\"step_ms\":%.3f,\"fwd_eager_ms\":%.3f,\"fwd_graph_ms\":%.3f,\"attn_ms\":%.3f,"
                    "\"attn_GBps\":%.0f,\"sample_ms\":%.3f,\"sample_radix_ms\":%.3f,\"prefill_s\":%.3f,\"step_MB\":%.0f,\"roofline_tokens_per_s\":%.0f,"
                    "\"dlogp_median\":%.3g,\"dlogp_p99\":%.3g,\"dlogp_max\":%.3g}\n",
                    shape.c_str(), B, prompt_len, new_tokens, r.tps, r.tps_eager, r.tps_hf, r.step_ms,
                    r.fwd_eager_ms, r.fwd_graph_ms, r.attn_ms, r.attn_gbs, r.sample_ms, r.sample_radix_ms, r.prefill_s, r.step_mb, r.roofline_tps, r.dlogp_median,
                    r.dlogp_p99, r.dlogp_max);
        std::fflush(stdout);
      }
    }
    if (group_p > 0)
      for (const auto& shape : bench_split(shapes)) {
        Decoder model(bench_shape_config(shape), *k, DType::F32);
        model.init_random(1);
        group_prefill(*k, model, shape, group_p, group_g, group_l);
      }
    std::printf("\nprompt %d + %d new tokens; step split at context %d; bandwidth %.0f GB/s\n", prompt_len, new_tokens,
                prompt_len + new_tokens / 2, bw / 1e9);
    std::printf("| shape | batch | tok/s graphs | tok/s eager | HF tok/s | prefill s in run | step ms in run "
                "| fwd eager ms | fwd graph ms | attn ms (GB/s) | sample ms (radix search) | MB/step (weights + KV) "
                "| roofline tok/s | of roofline |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows)
      std::printf("| %s | %d | %.0f | %.0f | %.0f | %.3f | %.2f | %.2f | %.2f | %.2f (%.0f) | %.2f (%.2f) | %.0f (%.0f + "
                  "%.0f) | %.0f | %.1f %% |\n",
                  r.shape.c_str(), r.batch, r.tps, r.tps_eager, r.tps_hf, r.prefill_s, r.step_ms, r.fwd_eager_ms,
                  r.fwd_graph_ms, r.attn_ms, r.attn_gbs, r.sample_ms, r.sample_radix_ms, r.step_mb, r.weight_mb, r.kv_mb, r.roofline_tps,
                  100.0 * r.tps / std::max(r.roofline_tps, 1e-30));
    std::printf("\n|logp_rollout - logp_trainer| over the sampled tokens of 16 sequences:\n"
                "| shape | batch | tokens | median | p99 | max |\n|---|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows)
      std::printf("| %s | %d | %lld | %.3g | %.3g | %.3g |\n", r.shape.c_str(), r.batch,
                  static_cast<long long>(r.dlogp_n), r.dlogp_median, r.dlogp_p99, r.dlogp_max);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_rollout: error: %s\n", e.what());
    return 1;
  }
}
