// CpuKernels: the reference implementation of the Kernels interface (plain
// loops + OpenMP, CBLAS for GEMM). It is the oracle the CUDA backend is tested
// against, so clarity comes before speed.
//
// Dtypes. act_dtype() is F32, but every op also runs entirely in F64 so that
// tests and whole-model finite-difference checks can work in double precision:
//  * f32 path: activations, parameters, gradients and the per-row statistics
//    (rstd, lse, logp, dlogp) are all f32, as kernels.h specifies.
//  * f64 path: ALL float tensors of the call are f64, including the gradients
//    and the statistics (rstd, lse, logp, dlogp).
// Mixing f32 and f64 in one call is rejected with a message naming the tensor.
// Reductions (norms, softmax sums, dot products outside BLAS) accumulate in
// double on both paths; RoPE angles are computed in double.
// Index tensors (tokens, positions, targets, cu_seqlens) are i32.
// copy() also converts to and from bf16 (and copies any dtype to itself).
#pragma once
#include "kernels/kernels.h"

namespace temper {

class CpuKernels final : public Kernels {
 public:
  Device device() const override { return Device::CPU; }
  DType act_dtype() const override { return DType::F32; }
  std::string name() const override { return "cpu"; }

  // memory.cpp
  Tensor alloc(const Shape& shape, DType dtype) override;
  void zero(Tensor& t) override;
  void copy(Tensor& dst, const Tensor& src) override;
  void copy_heads(Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head, int64_t count,
                  bool accumulate) override;

  // embedding.cpp
  void embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) override;
  void embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) override;

  // rmsnorm.cpp
  void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) override;
  void rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& rstd) override;

  // matmul.cpp
  void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) override;
  void matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                       const Tensor& inp, const Tensor& weight) override;

  // rope.cpp
  void rope_forward(Tensor& x, const Tensor& positions, float theta) override;
  void rope_backward(Tensor& dx, const Tensor& positions, float theta) override;

  // attention.cpp
  void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& cu_seqlens, int max_seqlen) override;
  void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                          const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& cu_seqlens, int max_seqlen) override;

  // attention_max_logit.cpp
  void attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                           int max_seqlen) override;

  // swiglu.cpp
  void swiglu_forward(Tensor& out, const Tensor& gu) override;
  void swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) override;

  // polynorm.cpp, differential_attention.cpp
  void polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) override;
  void polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu, const Tensor& coef,
                         const Tensor& rstd) override;
  void diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                 const Tensor& weight, double lambda_init, float eps) override;
  void diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight, const Tensor& dout,
                                  const Tensor& a1, const Tensor& a2, const Tensor& lam, const Tensor& weight,
                                  const Tensor& rstd, double lambda_init) override;

  // elementwise.cpp
  void add_inplace(Tensor& y, const Tensor& x) override;
  void scale_inplace(Tensor& y, float s) override;
  void axpby(Tensor& y, double a, const Tensor& x, double b) override;

  // lm_head.cpp
  void lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) override;
  void lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x, const Tensor& W,
                                 const Tensor& targets, const Tensor& dlogp) override;

  // kv_cache.cpp (f32 or f64 throughout, like the other ops)
  void kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v, const Tensor& slot,
                      const Tensor& pos) override;
  void attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache,
                        const Tensor& slot, const Tensor& pos) override;

  // sampling.cpp: logits f32, f64 or bf16; u and logp f32 or f64 (each on its own);
  // computed in double. With temperature <= 0 (greedy) logp is taken at temperature 1.
  void sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u, float temperature,
                     int top_k, float top_p) override;

  // adamw.cpp
  void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) override;
  double sum_squares(const Tensor& x) override;

  // fill_normal.cpp
  void fill_normal(Tensor& t, uint64_t seed, uint32_t stream, double std) override;

  // Rows of the lm_head logits buffer [chunk, V] computed at a time.
  static constexpr int64_t kLmHeadChunk = 128;
};

}  // namespace temper
