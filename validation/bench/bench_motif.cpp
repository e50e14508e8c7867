// The Motif architecture (grouped differential attention + PolyNorm) on the
// device: a weights/inputs/outputs dump for the PyTorch reference, and a
// throughput table of GDA vs plain attention.
//
//   bench_motif dump DIR [cpu|cuda]
//     A small GDA (8 signal / 2 noise / 2 kv heads) + PolyNorm model, 3 packed
//     documents: writes DIR/config.json, the batch (tokens, targets, positions,
//     cu_seqlens), every parameter (param.NAME.npy), log-probs, logits of every
//     token, and every gradient of L = mean_n(-logp) (grad.NAME.npy), all .npy
//     (f64 from the CPU backend in f64, f32 from CUDA's bf16 run).
//     validation/motif/torch_reference.py DIR recomputes them from the equations.
//   bench_motif throughput [seq ...]      (default 4096 16384; CUDA, exit 77 without)
//     One decoder layer at a ~1.5B shape (C 1536, H 12, KVH 2, D 128, F 8960),
//     forward + backward over one causal document, for standard attention, GDA
//     3:1 and 6:1, full differential attention, each with SwiGLU and PolyNorm:
//     ms per layer step, tokens/s, and the attention / activation op times.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/profiling_kernels.h"
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/decoder.h"

namespace {

using namespace temper;

// .npy v1.0 writer: little-endian f64, f32 or i32, C order.
void write_npy(const std::string& path, const std::vector<double>& v, const Shape& shape, const char* descr) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  TEMPER_CHECK(f.good(), "cannot write ", path);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = uint16_t(header.size());
  f.write(reinterpret_cast<const char*>(&len), 2);
  f.write(header.data(), std::streamsize(header.size()));
  const std::string d(descr);
  for (double x : v) {
    if (d == "<f8") {
      f.write(reinterpret_cast<const char*>(&x), 8);
    } else if (d == "<f4") {
      const float y = float(x);
      f.write(reinterpret_cast<const char*>(&y), 4);
    } else {
      const int32_t y = int32_t(x);
      f.write(reinterpret_cast<const char*>(&y), 4);
    }
  }
}

ModelConfig dump_config() {
  ModelConfig c;
  c.vocab_size = 97;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 96;
  c.rope_theta = 10000.0f;
  c.norm_eps = 1e-6f;
  c.init_std = 0.08f;
  c.tie_embeddings = false;
  c.attention = AttentionKind::GroupedDifferential;
  c.n_noise_heads = 2;
  c.mlp_activation = MlpActivation::PolyNorm;
  c.validate();
  return c;
}

int dump(const std::string& dir, const std::string& backend) {
  auto k = make_kernels(backend);
  const bool cpu = backend == "cpu";
  const DType pdt = cpu ? DType::F64 : DType::F32;
  const char* descr = cpu ? "<f8" : "<f4";
  const ModelConfig c = dump_config();
  Decoder m(c, *k, pdt);
  m.init_random(2025);
  // Move norm weights, lambda vectors and PolyNorm coefficients off their init
  // values (on the host, identically for both backends) so every path matters.
  Rng rng(99);
  for (auto& p : m.params()) {
    if (p.decay) continue;
    std::vector<double> v = to_host_f64(*k, p.value);
    for (double& x : v) x += 0.2 * rng.normal();
    Tensor t = to_device(*k, v, pdt);
    k->copy(p.value, t.reshape(p.value.shape()));
  }
  m.refresh_compute();
  std::vector<std::vector<int32_t>> docs(3);
  Rng drng(5);
  for (size_t d = 0; d < docs.size(); ++d)
    for (int i = 0; i < 33 + 20 * int(d); ++i) docs[d].push_back(int32_t(drng.below(97)));
  Batch b = make_lm_batch(*k, docs, c.vocab_size);
  const int64_t N = b.n_tokens;
  std::vector<double> coef(size_t(N), 0.0);
  int64_t counted = 0;
  const auto targets = to_host_f64(*k, b.targets);
  for (double t : targets) counted += t >= 0;
  for (int64_t i = 0; i < N; ++i) coef[size_t(i)] = targets[size_t(i)] >= 0 ? -1.0 / double(counted) : 0.0;
  m.zero_grad();
  Tensor logp;
  m.forward(b, logp);
  m.backward(b, to_device(*k, coef, m.stat_dtype()));
  const auto lp = to_host_f64(*k, logp);
  std::vector<int64_t> rows(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) rows[size_t(i)] = i;
  Tensor logits;
  m.logits_at(b, rows, logits);

  write_npy(dir + "/tokens.npy", to_host_f64(*k, b.tokens), {N}, "<i4");
  write_npy(dir + "/targets.npy", targets, {N}, "<i4");
  write_npy(dir + "/positions.npy", to_host_f64(*k, b.positions), {N}, "<i4");
  write_npy(dir + "/cu_seqlens.npy", to_host_f64(*k, b.cu_seqlens), {b.cu_seqlens.numel()}, "<i4");
  write_npy(dir + "/dlogp.npy", coef, {N}, descr);
  write_npy(dir + "/logp.npy", lp, {N}, descr);
  write_npy(dir + "/logits.npy", to_host_f64(*k, logits), {N, c.vocab_size}, descr);
  std::ofstream names(dir + "/params.txt");
  for (auto& p : m.params()) {
    write_npy(dir + "/param." + p.name + ".npy", to_host_f64(*k, p.value), p.value.shape(), descr);
    write_npy(dir + "/grad." + p.name + ".npy", to_host_f64(*k, p.grad), p.grad.shape(), descr);
    names << p.name << "\n";
  }
  std::ofstream cfg(dir + "/config.json");
  cfg.precision(17);  // the exact float values temper uses (lambda_init, eps, theta)
  cfg << "{\"backend\": \"" << backend << "\", \"vocab_size\": " << c.vocab_size << ", \"d_model\": " << c.d_model
      << ", \"n_layers\": " << c.n_layers << ", \"n_heads\": " << c.n_heads << ", \"n_noise_heads\": " << c.n_noise_heads
      << ", \"n_kv_heads\": " << c.n_kv_heads << ", \"head_dim\": " << c.head_dim << ", \"ffn_dim\": " << c.ffn_dim
      << ", \"rope_theta\": " << double(c.rope_theta) << ", \"norm_eps\": " << double(c.norm_eps)
      << ", \"diff_norm_eps\": " << double(c.diff_norm_eps) << ", \"polynorm_eps\": " << double(c.polynorm_eps)
      << ", \"attention\": \""
      << attention_kind_name(c.attention) << "\", \"mlp_activation\": \"" << mlp_activation_name(c.mlp_activation)
      << "\", \"tie_embeddings\": " << (c.tie_embeddings ? "true" : "false") << ", \"lambda_init\": [";
  for (int l = 0; l < c.n_layers; ++l) cfg << (l ? ", " : "") << double(c.lambda_init(l));
  cfg << "]}\n";
  std::printf("bench_motif dump: %lld tokens, %zu parameters (%s backend) -> %s\n", (long long)N, m.params().size(),
              backend.c_str(), dir.c_str());
  return 0;
}

struct Variant {
  const char* name;
  AttentionKind attn;
  int noise_heads;
  MlpActivation act;
};

int throughput(std::vector<int64_t> seqs) {
  std::unique_ptr<Kernels> g;
  try {
    g = make_cuda_kernels(0);
  } catch (const Error& e) {
    std::printf("bench_motif throughput skipped: %s\n", e.what());
    return 77;
  }
  if (seqs.empty()) seqs = {4096, 16384};
  const std::vector<Variant> variants = {
      {"standard+swiglu", AttentionKind::Standard, 0, MlpActivation::SwiGLU},
      {"gda3:1+swiglu", AttentionKind::GroupedDifferential, 4, MlpActivation::SwiGLU},
      {"gda6:1+swiglu", AttentionKind::GroupedDifferential, 2, MlpActivation::SwiGLU},
      {"diff1:1+swiglu", AttentionKind::Differential, 12, MlpActivation::SwiGLU},
      {"standard+polynorm", AttentionKind::Standard, 0, MlpActivation::PolyNorm},
      {"gda3:1+polynorm", AttentionKind::GroupedDifferential, 4, MlpActivation::PolyNorm},
  };
  std::printf("temper CUDA, one decoder layer (C 1536, H 12, KVH 2, D 128, F 8960), fwd+bwd, one causal document\n");
  std::printf("%-18s %6s | %9s %11s %7s | %9s %9s %9s\n", "variant", "seq", "step ms", "tokens/s", "vs std",
              "attn ms", "combine", "act ms");
  for (int64_t S : seqs) {
    double base = 0;
    for (const Variant& v : variants) {
      ModelConfig c;
      c.vocab_size = 1024;
      c.d_model = 1536;
      c.n_layers = 1;
      c.n_heads = 12;
      c.n_kv_heads = 2;
      c.head_dim = 128;
      c.ffn_dim = 8960;
      c.rope_theta = 1e6f;
      c.attention = v.attn;
      c.n_noise_heads = v.noise_heads;
      c.mlp_activation = v.act;
      ProfilingKernels prof(*g, false);
      Decoder m(c, prof, DType::F32);
      std::vector<int32_t> doc(static_cast<size_t>(S));
      Rng rng(7);
      for (auto& t : doc) t = int32_t(rng.below(1024));
      Batch b = make_lm_batch(prof, {doc}, 1024);
      Tensor dlogp = to_device(prof, std::vector<double>(size_t(S), -1.0 / double(S)), DType::F32);
      Tensor logp;
      auto step = [&] {
        m.forward(b, logp);
        m.backward(b, dlogp);
      };
      step();
      g->synchronize();
      const int reps = S <= 4096 ? 10 : 4;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) step();
      g->synchronize();
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
      prof.set_enabled(true);  // one profiled step for the op breakdown
      step();
      double attn = 0, comb = 0, act = 0;
      for (const auto& s : prof.stats()) {
        if (s.op.rfind("attention_", 0) == 0) attn += s.seconds * 1e3;
        if (s.op.rfind("diff_attn_combine", 0) == 0) comb += s.seconds * 1e3;
        if (s.op.rfind("swiglu", 0) == 0 || s.op.rfind("polynorm", 0) == 0) act += s.seconds * 1e3;
      }
      if (v.attn == AttentionKind::Standard && v.act == MlpActivation::SwiGLU) base = ms;
      std::printf("%-18s %6lld | %9.3f %11.0f %7.3f | %9.3f %9.3f %9.3f\n", v.name, (long long)S, ms,
                  double(S) / (ms * 1e-3), ms / base, attn, comb, act);
      std::printf("RESULT %s %lld %.4f %.4f %.4f %.4f\n", v.name, (long long)S, ms, attn, comb, act);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "dump" && argc >= 3) return dump(argv[2], argc >= 4 ? argv[3] : "cpu");
    if (mode == "throughput") {
      std::vector<int64_t> seqs;
      for (int i = 2; i < argc; ++i) seqs.push_back(std::atoll(argv[i]));
      return throughput(seqs);
    }
    std::fprintf(stderr, "usage: bench_motif dump DIR [cpu|cuda] | bench_motif throughput [seq ...]\n");
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_motif: %s\n", e.what());
    return 1;
  }
}
