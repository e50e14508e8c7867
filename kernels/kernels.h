// The one kernel interface the model, training and RL code call.
//
// kernels/cpu implements it with plain loops, OpenMP and BLAS: the readable
// reference and the test oracle (fp32 and fp64). kernels/cuda implements the
// same calls for bf16 activations with fp32 accumulation. Model code never
// names a device: it allocates through the backend and calls these ops.
//
// Conventions (all backends):
//  * Tensors are dense row-major; every tensor passed to an op lives on the
//    backend's device. "N" is the number of tokens of a micro-batch, flattened:
//    several packed sequences of several documents are one token stream, and
//    document boundaries (cu_seqlens) say which tokens may attend to which.
//  * Activation tensors have the backend's act_dtype(); parameters passed to
//    forward ops have act_dtype() too (the compute copy), their gradients are
//    f32 on every backend (gradients accumulate across micro-batches).
//  * Weight gradients ACCUMULATE (+=). Input gradients are overwritten unless
//    the op takes an `accumulate` flag and it is true.
//  * Small per-row statistics (rstd, lse, logp) are f32 on every backend.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/counter_normal.h"

namespace temper {

struct AdamWParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: p -= lr * wd * p
  int64_t step = 1;           // 1-based, for bias correction
  float grad_scale = 1.0f;    // gradient is multiplied by this first (clipping, averaging)
};

class Kernels {
 public:
  virtual ~Kernels() = default;
  virtual Device device() const = 0;
  virtual DType act_dtype() const = 0;
  virtual std::string name() const = 0;

  // ---- memory -------------------------------------------------------------
  virtual Tensor alloc(const Shape& shape, DType dtype) = 0;  // uninitialised
  // Uninitialised host (CPU) memory that copies from and to the device fastest
  // (page-locked on cuda); checkpoint snapshots are staged in it.
  virtual Tensor alloc_host(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype, Device::CPU); }
  virtual void zero(Tensor& t) = 0;
  // dst <- src: any pair of devices; f32/f64/bf16 converted when dtypes differ.
  virtual void copy(Tensor& dst, const Tensor& src) = 0;
  virtual void synchronize() {}
  // The backend's native stream as an opaque handle (cudaStream_t on cuda), for
  // communicators that queue work behind the kernels; null where there is none.
  virtual void* native_stream() { return nullptr; }
  // Bitwise-reproducible results (on) or, where a backend has a faster kernel
  // whose last bits vary from run to run, that one (off). Deck key
  // run.deterministic; backends without such a choice ignore it.
  virtual void set_deterministic(bool on) { (void)on; }
  // Bytes this backend holds from its device allocator (its high-water mark when
  // the allocator caches, as the cuda one does); -1 where it is not tracked (cpu).
  virtual int64_t device_memory_reserved() const { return -1; }

  // ---- recorded call sequences (CUDA graphs) ---------------------------------
  // A backend that can record a run of its own calls and replay it cheaply returns
  // true from graph_begin(); the calls made until graph_end() are recorded, not run,
  // and graph_end() returns an id that graph_launch(id) replays in stream order.
  // Recorded calls must not copy to or from host memory, synchronise or throw; the
  // tensors they touch must outlive the recording (graph_release(id) drops it).
  // The default records nothing: graph_begin() returns false and callers run their
  // calls directly (the cpu backend, and any backend without graphs).
  virtual bool graph_begin() { return false; }
  virtual int graph_end() { return -1; }
  virtual void graph_launch(int /*id*/) {}
  virtual void graph_release(int /*id*/) {}

  // ---- embedding: out[N,C] = wte[tokens[n], :] ------------------------------
  virtual void embedding_forward(Tensor& out, const Tensor& tokens /*i32[N]*/, const Tensor& wte /*[V,C]*/) = 0;
  // dwte[tokens[n], :] += dout[n, :]
  virtual void embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) = 0;

  // ---- RMSNorm over the last dimension C; rows = numel / C -----------------
  // out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps), rstd f32[rows]
  virtual void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) = 0;
  // y += x (add_inplace), then out = rmsnorm(y) as rmsnorm_forward, in one call
  // (a residual add and the next norm; backends may fuse them).
  virtual void add_rmsnorm_forward(Tensor& y, const Tensor& x, Tensor& out, Tensor& rstd, const Tensor& weight,
                                   float eps) {
    add_inplace(y, x);
    rmsnorm_forward(out, rstd, y, weight, eps);
  }
  // dinp (= or += when accumulate), dweight += ...
  virtual void rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout,
                                const Tensor& inp, const Tensor& weight, const Tensor& rstd) = 0;

  // ---- linear: out[N,OC] = inp[N,C] @ weight[OC,C]^T (+ bias[OC]) -----------
  virtual void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) = 0;
  // dinp = dout @ weight (skipped when null; += when accumulate);
  // dweight += dout^T @ inp; dbias += column sums of dout (when non-null)
  virtual void matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                               const Tensor& inp, const Tensor& weight) = 0;

  // ---- rotary position embedding, in place on x[N, H, D] -------------------
  // "rotate half" convention (Llama/Qwen in transformers): pairs (i, i + D/2),
  // angle = positions[n] * theta^(-2i/D). Backward applies the inverse rotation.
  virtual void rope_forward(Tensor& x, const Tensor& positions /*i32[N]*/, float theta) = 0;
  virtual void rope_backward(Tensor& dx, const Tensor& positions, float theta) = 0;

  // ---- attention: causal within each document, grouped-query ---------------
  // q[N,H,D], k,v[N,KVH,D] (H % KVH == 0; query head h uses kv head h/(H/KVH));
  // cu_seqlens i32[S+1]: document s spans tokens [cu[s], cu[s+1]); a token
  // attends to tokens of its own document at or before it. Scale 1/sqrt(D).
  // out[N,H,D]; lse f32[N,H] = logsumexp of the scaled scores (for backward).
  virtual void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& cu_seqlens, int max_seqlen) = 0;
  // dq, dk, dv overwritten.
  virtual void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                                  const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& cu_seqlens, int max_seqlen) = 0;

  // QK-clip support: the largest pre-softmax logit of each query head,
  // out[h] = max(out[h], max over tokens i and j <= i of i's document of q_i,h . k_j,g(h) / sqrt(D)),
  // GQA and cu_seqlens as in attention_forward. out f32[H] (f64 on the CPU f64 path);
  // it accumulates (max), so the caller starts it at -inf.
  virtual void attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                                   int max_seqlen) = 0;

  // ---- SwiGLU on a fused gate|up projection --------------------------------
  // gu[N, 2F]: columns [0,F) gate, [F,2F) up; out[N,F] = silu(gate) * up
  virtual void swiglu_forward(Tensor& out, const Tensor& gu) = 0;
  virtual void swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) = 0;

  // ---- PolyNorm on a fused gate|up projection (Zhuo et al. 2024; Motif) -----
  // gu[N, 2F]: columns [0,F) gate x, [F,2F) up u; coef[4] = (w0, w1, w2, b);
  // N(z) = z / sqrt(mean_F(z^2) + eps) over the F columns of one row;
  //   out[N,F] = (w0 N(x^3) + w1 N(x^2) + w2 N(x) + b) * u
  // rstd [N,3] (stat dtype) = the three 1/sqrt(...) factors of x^3, x^2, x.
  virtual void polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) = 0;
  // dgu overwritten; dcoef[4] accumulates.
  virtual void polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu,
                                 const Tensor& coef, const Tensor& rstd) = 0;

  // ---- differential attention: combining signal and noise maps (Ye et al. 2024,
  // grouped as in Motif 2's GDA; model/differential_attention.h) -------------------
  // a1[N,H,D]: signal heads softmax(Q1 K1^T/sqrt(d)) V; a2[N,G,D]: noise-control
  // heads softmax(Q2 K2^T/sqrt(d)) V, H % G == 0, signal head h uses noise head
  // h / (H/G). D is the width combined per head (2d in the released layout, values
  // twice as wide as queries). lam[4,Dl] rows (lq1, lk1, lq2, lk2), weight[D] the
  // per-head norm:
  //   lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init
  //   y[n,h] = a1[n,h] - lambda * a2[n, h/(H/G)]
  //   out[n,h] = (1 - lambda_init) * weight * y[n,h] * rstd[n,h],
  //   rstd[n,h] = 1/sqrt(mean_D(y^2) + eps)  (stat dtype [N,H])
  virtual void diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2,
                                         const Tensor& lam, const Tensor& weight, double lambda_init, float eps) = 0;
  // da1, da2 overwritten; dlam, dweight accumulate (f32 like other weight grads).
  virtual void diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight,
                                          const Tensor& dout, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                          const Tensor& weight, const Tensor& rstd, double lambda_init) = 0;

  // ---- elementwise ----------------------------------------------------------
  virtual void add_inplace(Tensor& y, const Tensor& x) = 0;  // y += x
  virtual void scale_inplace(Tensor& y, float s) = 0;        // y *= s
  // y = a * y + b * x (dtypes as add_inplace; a == 0 ignores y's old contents).
  // Used by the Muon optimizer (momentum, Newton-Schulz polynomial, update).
  virtual void axpby(Tensor& y, double a, const Tensor& x, double b) = 0;

  // ---- head blocks (sequence-parallel layouts, parallel/ulysses) ------------
  // dst[t, dst_head + i, :] = src[t, src_head + i, :] (+= when accumulate) for t < N,
  // i < count; dst [N, Hd, D], src [N, Hs, D] of one dtype. The default runs one copy
  // (or add) per token through the ops above; a backend may override it with one
  // strided kernel.
  virtual void copy_heads(Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head, int64_t count,
                          bool accumulate) {
    check_copy_heads(dst, dst_head, src, src_head, count);
    const int64_t N = dst.dim(0), Hd = dst.dim(1), Hs = src.dim(1), D = dst.dim(2);
    const Tensor d2 = dst.reshape({N * Hd, D}), s2 = src.reshape({N * Hs, D});
    for (int64_t t = 0; t < N && count > 0; ++t) {
      Tensor to = d2.rows(t * Hd + dst_head, t * Hd + dst_head + count);
      const Tensor from = s2.rows(t * Hs + src_head, t * Hs + src_head + count);
      if (accumulate) add_inplace(to, from);
      else copy(to, from);
    }
  }
  // Throws unless dst, src are [N, *, D] of one dtype and both head ranges fit.
  static void check_copy_heads(const Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head,
                               int64_t count) {
    TEMPER_CHECK(dst.ndim() == 3 && src.ndim() == 3 && src.dim(0) == dst.dim(0) && src.dim(2) == dst.dim(2) &&
                     dst.dtype() == src.dtype() && count >= 0 && dst_head >= 0 && src_head >= 0 &&
                     dst_head + count <= dst.dim(1) && src_head + count <= src.dim(1),
                 "copy_heads: dst ", dtype_name(dst.dtype()), shape_str(dst.shape()), " heads [", dst_head, ", +",
                 count, ") from src ", dtype_name(src.dtype()), shape_str(src.shape()), " heads [", src_head, ", +",
                 count, ")");
  }

  // ---- output head + log-probabilities, chunked over tokens ----------------
  // logits = x[N,C] @ W[V,C]^T are never materialised for all N at once.
  // logp[n] = log softmax(logits[n])[targets[n]] (f32[N]); targets < 0 give 0.
  virtual void lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) = 0;
  // Same forward (logp written), plus the gradients of L = sum_n dlogp[n] * logp[n]:
  // dx = dL/dx (overwritten; skipped when null), dW += dL/dW. SFT cross-entropy is
  // dlogp[n] = -loss_weight[n] / token_count; RL losses pass their own coefficients.
  virtual void lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x, const Tensor& W,
                                         const Tensor& targets, const Tensor& dlogp) = 0;

  // ---- generation: KV cache, cached attention, sampling ---------------------
  // The cache holds S sequence slots of up to T positions: kcache, vcache
  // [S, T, KVH, D] (act dtype). For each of N new tokens, slot i32[N] names its
  // sequence and pos i32[N] its position in that sequence (0-based).
  // kv_cache_write: kcache[slot[n], pos[n]] = k[n], vcache[...] = v[n] (k, v [N,KVH,D]).
  virtual void kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v,
                              const Tensor& slot, const Tensor& pos) = 0;
  // rope_forward(q, pos), rope_forward(k, pos), then kv_cache_write(kcache, vcache,
  // k, v, slot, pos), in one call (a decode step's position work; backends may fuse it).
  virtual void rope_cache_write(Tensor& q, Tensor& k, const Tensor& v, Tensor& kcache, Tensor& vcache,
                                const Tensor& slot, const Tensor& pos, float theta) {
    rope_forward(q, pos, theta);
    rope_forward(k, pos, theta);
    kv_cache_write(kcache, vcache, k, v, slot, pos);
  }
  // The same from a packed projection qkv [N, H + 2 KVH, D] (heads q | k | v, one
  // GEMM's output): q [N, H, D] = rope(q heads); the rotated k heads and the v heads
  // go to the caches (qkv is left as it is).
  virtual void qkv_rope_cache_write(Tensor& q, const Tensor& qkv, Tensor& kcache, Tensor& vcache, const Tensor& slot,
                                    const Tensor& pos, float theta) {
    const int64_t N = q.dim(0), H = q.dim(1), KVH = kcache.dim(2), D = kcache.dim(3);
    Tensor kt = alloc({N, KVH, D}, qkv.dtype()), vt = alloc({N, KVH, D}, qkv.dtype());
    copy_heads(q, 0, qkv, 0, H, false);
    copy_heads(kt, 0, qkv, H, KVH, false);
    copy_heads(vt, 0, qkv, H + KVH, KVH, false);
    rope_cache_write(q, kt, vt, kcache, vcache, slot, pos, theta);
  }
  // Attention of q[N,H,D] against the cache: token n attends to positions
  // [0, pos[n]] of its slot (the cache must already hold them, its own included).
  // GQA as in attention_forward, scale 1/sqrt(D). out[N,H,D]. Serves both prefill
  // (all prompt tokens at once) and decode (one token per sequence).
  virtual void attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache,
                                const Tensor& slot, const Tensor& pos) = 0;
  // Sampling, one row of logits [B, V] (act dtype or f32) per sequence:
  //   z = logits / temperature; keep the top_k largest (top_k <= 0: all), then the
  //   smallest prefix (by descending z) whose softmax mass is >= top_p (top_p >= 1:
  //   all); draw from the kept tokens' renormalised softmax by inverse CDF with
  //   u[b] in [0,1) (f32[B], from a per-sample seeded stream on the host), walking
  //   the kept tokens in descending z order (ties: lower id first).
  //   temperature <= 0 means greedy: the argmax (lowest id on ties).
  // tokens i32[B] get the draw; logp f32[B] = log softmax(z)[token] over ALL tokens
  // (the policy's log-probability at this temperature, before truncation).
  virtual void sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u,
                             float temperature, int top_k, float top_p) = 0;
  // logits[:, first:] = -inf for logits [B, V] (f32, f64 or bf16), so no token id
  // >= first can be drawn (a model vocabulary padded past the tokenizer's). The
  // default goes through host memory; backends may do it in place.
  virtual void mask_logits_from(Tensor& logits, int64_t first) {
    if (logits.ndim() != 2 || first >= logits.dim(1) || logits.numel() == 0) return;
    const int64_t B = logits.dim(0), V = logits.dim(1), from = first < 0 ? 0 : first;
    Tensor h = Tensor::empty(logits.shape(), logits.dtype());
    copy(h, logits);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = from; j < V; ++j) {
        if (h.dtype() == DType::F32) h.data<float>()[b * V + j] = -std::numeric_limits<float>::infinity();
        else if (h.dtype() == DType::F64) h.data<double>()[b * V + j] = -std::numeric_limits<double>::infinity();
        else if (h.dtype() == DType::BF16) reinterpret_cast<uint16_t*>(h.raw())[b * V + j] = 0xFF80;  // -inf
      }
    copy(logits, h);
  }

  // ---- optimizer ------------------------------------------------------------
  // param, m, v f32; grad f32. m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2 (g' = g * grad_scale);
  // param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param)
  virtual void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) = 0;
  // The AdamW update of many tensors at once (each with its own weight decay;
  // p.weight_decay is not used), each defined `compute` then receiving the
  // updated param converted to its dtype (the bf16 compute copy), exactly as
  // copy(compute, param) would. Backends may do it all in a few launches (cuda:
  // one multi-tensor kernel); the default, which is the cpu reference, calls
  // adamw_step and copy per tensor.
  struct AdamWTensor {
    Tensor param, grad, m, v;  // as adamw_step
    Tensor compute;            // optional (undefined: none)
    float weight_decay = 0.0f;
  };
  virtual void adamw_step_many(const std::vector<AdamWTensor>& ts, const AdamWParams& p) {
    for (const AdamWTensor& t : ts) {
      AdamWParams q = p;
      q.weight_decay = t.weight_decay;
      Tensor param = t.param, m = t.m, v = t.v;
      adamw_step(param, t.grad, m, v, q);
      if (t.compute.defined() && t.compute.raw() != t.param.raw()) {
        Tensor c = t.compute;
        copy(c, t.param);
      }
    }
  }
  virtual double sum_squares(const Tensor& x) = 0;  // in double, returned to the host
  // The sum over several tensors, added in the order given; backends may do it in
  // one host round trip (the default calls sum_squares on each).
  virtual double sum_squares_many(const std::vector<const Tensor*>& xs) {
    double s = 0;
    for (const Tensor* x : xs) s += sum_squares(*x);
    return s;
  }

  // ---- initialisation -------------------------------------------------------
  // t[i] = std * z_i (f32 or f64; computed in double, rounded once), z_i the standard
  // normal of element i of `stream` under `seed` from the counter-based generator of
  // kernels/counter_normal.h: the same bits on every backend. The default fills host
  // memory and copies it over; backends override it to fill in place.
  virtual void fill_normal(Tensor& t, uint64_t seed, uint32_t stream, double std) {
    TEMPER_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "fill_normal: f32 or f64 tensor expected, got ",
                 dtype_name(t.dtype()));
    Tensor h = Tensor::empty(t.shape(), t.dtype(), Device::CPU);
    if (h.dtype() == DType::F64) cnormal::fill_range(h.data<double>(), 0, h.numel(), seed, stream, std);
    else cnormal::fill_range(h.data<float>(), 0, h.numel(), seed, stream, std);
    copy(t, h);
  }
};

// The reference backend (always built).
std::unique_ptr<Kernels> make_cpu_kernels();
// The CUDA backend; throws when temper was built without CUDA or no GPU is present.
std::unique_ptr<Kernels> make_cuda_kernels(int device_index = 0);
// "cpu" | "cuda" | "kokkos" (kernels/kokkos/kokkos_kernels.h; throws when built without Kokkos)
std::unique_ptr<Kernels> make_kernels(const std::string& backend, int device_index = 0);

}  // namespace temper
