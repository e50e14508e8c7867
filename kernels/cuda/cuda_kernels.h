// CudaKernels: the CUDA implementation of the Kernels interface (kernels.h).
//
// Dtypes. act_dtype() is BF16: activations, forward parameters (the compute
// copies) and input gradients (dinp, dx, dq, ...) are bf16. Weight gradients,
// AdamW state and master parameters are f32, as are the per-row statistics
// (rstd, lse, logp, dlogp). All arithmetic accumulates in f32 (GEMMs use
// CUBLAS_COMPUTE_32F); sum_squares accumulates in double.
// Exceptions: add_inplace also takes f32 += f32 and f32 += bf16, scale_inplace
// f32 or bf16, and sum_squares f32 or bf16, so gradient buffers can use them.
// Index tensors (tokens, positions, targets, cu_seqlens) are i32 on the device.
//
// Everything runs on one stream owned by the backend, in stream order; copies
// that touch host memory synchronise before returning. Kernels never throw
// from the device: out-of-range token ids or targets produce NaN outputs.
// One .cu file per kernel family; each launch is checked.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "kernels/cuda/caching_allocator.h"
#include "kernels/kernels.h"

namespace temper {

class CudaKernels final : public Kernels {
 public:
  explicit CudaKernels(int device_index);  // memory.cu
  ~CudaKernels() override;
  CudaKernels(const CudaKernels&) = delete;
  CudaKernels& operator=(const CudaKernels&) = delete;

  Device device() const override { return Device::CUDA; }
  DType act_dtype() const override { return DType::BF16; }
  std::string name() const override { return "cuda"; }

  int device_index() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  void* native_stream() override { return stream_; }
  // run.deterministic (default on): see Kernels::set_deterministic. The weight-
  // gradient reductions are deterministic either way; this picks the attention
  // backward (cuDNN's deterministic graph or the scalar kernels, not the
  // tensor-core kernels' f32 atomics).
  void set_deterministic(bool on) override { deterministic_ = on; }
  bool deterministic() const { return deterministic_; }
  cuda::CachingAllocator& allocator() { return *pool_; }

  // memory.cu
  Tensor alloc(const Shape& shape, DType dtype) override;
  Tensor alloc_host(const Shape& shape, DType dtype) override;  // page-locked (cudaHostAlloc)
  void zero(Tensor& t) override;
  void copy(Tensor& dst, const Tensor& src) override;
  void synchronize() override;

  // embedding.cu
  void embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) override;
  void embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) override;

  // rmsnorm.cu
  void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) override;
  void add_rmsnorm_forward(Tensor& y, const Tensor& x, Tensor& out, Tensor& rstd, const Tensor& weight,
                           float eps) override;
  void rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& rstd) override;

  // matmul.cu
  void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) override;
  void matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                       const Tensor& inp, const Tensor& weight) override;

  // rope.cu
  void rope_forward(Tensor& x, const Tensor& positions, float theta) override;
  void rope_backward(Tensor& dx, const Tensor& positions, float theta) override;

  // attention_forward.cu / attention_backward.cu
  void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& cu_seqlens, int max_seqlen) override;
  void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                          const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                          int max_seqlen) override;

  // attention_cached.cu: decode / prefill against the KV cache [S, T, KVH, D]
  void attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache, const Tensor& slot,
                        const Tensor& pos) override;

  // swiglu.cu
  void swiglu_forward(Tensor& out, const Tensor& gu) override;
  void swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) override;

  // polynorm.cu, differential_attention.cu
  void polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) override;
  void polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu, const Tensor& coef,
                         const Tensor& rstd) override;
  void diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                 const Tensor& weight, double lambda_init, float eps) override;
  void diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight, const Tensor& dout,
                                  const Tensor& a1, const Tensor& a2, const Tensor& lam, const Tensor& weight,
                                  const Tensor& rstd, double lambda_init) override;

  // elementwise.cu
  void add_inplace(Tensor& y, const Tensor& x) override;
  void scale_inplace(Tensor& y, float s) override;
  void axpby(Tensor& y, double a, const Tensor& x, double b) override;

  // attention_max_logit.cu (QK-clip): q, k bf16, out f32[H]
  void attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                           int max_seqlen) override;

  // copy_heads.cu (sequence-parallel layouts)
  void copy_heads(Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head, int64_t count,
                  bool accumulate) override;

  // lm_head.cu
  void lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) override;
  void lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x, const Tensor& W,
                                 const Tensor& targets, const Tensor& dlogp) override;

  // kv_cache.cu
  void rope_cache_write(Tensor& q, Tensor& k, const Tensor& v, Tensor& kcache, Tensor& vcache, const Tensor& slot,
                        const Tensor& pos, float theta) override;
  void qkv_rope_cache_write(Tensor& q, const Tensor& qkv, Tensor& kcache, Tensor& vcache, const Tensor& slot,
                            const Tensor& pos, float theta) override;
  void kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v, const Tensor& slot,
                      const Tensor& pos) override;

  // sampling.cu
  void sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u, float temperature,
                     int top_k, float top_p) override;
  void mask_logits_from(Tensor& logits, int64_t first) override;

  // memory_stats.cpp: device memory of the caching allocator, bucket-rounded.
  // in_use_bytes: held by live tensors now. reserved_bytes: in use + cached,
  // i.e. what the process holds from the driver; the cache only grows (unless
  // an out-of-memory retry releases it), so after a training step this is the
  // step's high-water mark (torch.cuda.max_memory_reserved's counterpart).
  size_t in_use_bytes() const;
  size_t reserved_bytes() const;
  int64_t device_memory_reserved() const override { return int64_t(reserved_bytes()); }

  // adamw.cu
  void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) override;
  double sum_squares(const Tensor& x) override;
  double sum_squares_many(const std::vector<const Tensor*>& xs) override;
  // One multi-tensor kernel over all tensors (chunks of every tensor in one grid,
  // a pointer table on the device), the bf16 compute copies written in the same pass.
  void adamw_step_many(const std::vector<AdamWTensor>& ts, const AdamWParams& p) override;

  // fill_normal.cu
  void fill_normal(Tensor& t, uint64_t seed, uint32_t stream, double std) override;

  // matmul.cu: row-major C[M,N] = alpha * op(A) @ op(B) + beta * C through
  // cublasGemmEx (f32 compute). A and B are bf16; C is bf16 or f32 (ctype).
  // lda/ldb/ldc are the row strides of the stored matrices.
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
            const void* B, int64_t ldb, float beta, void* C, DType ctype, int64_t ldc);

  // cuda_graph.cu: recorded call sequences (kernels.h graph_*). While recording,
  // work that would allocate from the caching allocator takes persistent scratch
  // instead (a block freed after the recording would be handed to another tensor
  // while the graph still writes it).
  bool graph_begin() override;
  int graph_end() override;
  void graph_launch(int id) override;
  void graph_release(int id) override;
  bool recording() const { return recording_; }
  // Persistent f32 scratch number `which` of at least `elems` elements; grown (the
  // old block kept alive for graphs that recorded it), never shrunk.
  Tensor scratch_f32(int which, int64_t elems);

  // lm_head.cu: rows of x per output-head chunk: at most kLmHeadMaxRows, the one
  // f32 logits buffer [rows, V] (bf16 gradients written in place) under
  // kLmHeadChunkBytes, chunks of equal size (multiples of 64 rows when several).
  // Qwen2 (V = 151936): 4096 rows, 2.3 GiB. MemoryPlan mirrors this rule.
  static constexpr int64_t kLmHeadMaxRows = 4096;
  static constexpr int64_t kLmHeadBytesPerLogit = 4;
  static constexpr int64_t kLmHeadChunkBytes = int64_t(5) << 29;  // 2.5 GiB
  static int64_t lm_head_chunk_rows(int64_t N, int64_t V);

 private:
  int device_ = 0;
  int sm_count_ = 1;  // multiprocessors, for grid sizing
  bool deterministic_ = true;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::shared_ptr<cuda::CachingAllocator> pool_;
  // adamw.cu: device copies of the multi-tensor kernels' pointer tables, kept while
  // callers pass the same tensors (the optimizer and the gradient norm, every step):
  // a table is uploaded once, not per call. Most recently used first, a few kept.
  struct DeviceTable {
    std::vector<unsigned char> host;
    Tensor dev;
  };
  std::vector<DeviceTable> tables_;
  const void* device_table(std::vector<unsigned char> bytes);
  bool recording_ = false;
  std::vector<cudaGraphExec_t> graphs_;  // by id; null once released
  std::vector<Tensor> scratch_, scratch_retired_;
};

}  // namespace temper
