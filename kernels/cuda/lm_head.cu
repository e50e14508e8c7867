// CUDA backend: output head + per-token log-probabilities, chunked over tokens
// so logits are never materialised for all N rows. Per chunk of R rows:
//   logits[R, V] (f32) = x_chunk @ W^T                        (cublasGemmEx)
//   one block per row: lse = max + log sum exp (online), logp = logits[t] - lse
//   backward: dlogits[R, V] (bf16) = dlogp (onehot(t) - softmax(logits))
//             dx_chunk = dlogits @ W (bf16, overwritten),  dW += dlogits^T @ x_chunk (f32)
// Rows with target < 0 get logp 0 and a zero dlogits row; targets >= V give NaN.
// R is capped so the f32 + bf16 buffers [R, V] stay under kLmHeadChunkBytes.
#include <algorithm>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

constexpr int kThreads = 512;

// logits row n of the chunk; logp/targets/dlogp already offset to the chunk.
// dlogits may be null (forward only).
__global__ void log_softmax_rows(float* logp, __nv_bfloat16* dlogits, const float* logits, const int32_t* targets,
                                 const float* dlogp, int64_t V) {
  __shared__ float scratch_max[32], scratch_sum[32];
  const int64_t r = blockIdx.x;
  const float* row = logits + r * V;
  const int32_t tgt = targets[r];
  if (tgt < 0) {
    if (threadIdx.x == 0) logp[r] = 0.0f;
    if (dlogits)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dlogits[r * V + j] = __float2bfloat16_rn(0.0f);
    return;
  }
  float m = -INFINITY, s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float l = row[j];
    if (l > m) {
      s = s * expf(m - l) + 1.0f;
      m = l;
    } else {
      s += expf(l - m);
    }
  }
  const float M = cuda::block_max(m, scratch_max);
  const float part = (m == -INFINITY) ? 0.0f : s * expf(m - M);
  const float S = cuda::block_sum(part, scratch_sum);
  const float lse = M + logf(S);
  if (threadIdx.x == 0) logp[r] = tgt < V ? row[tgt] - lse : __int_as_float(0x7fc00000);
  if (!dlogits) return;
  const float g = dlogp[r];
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float d = -g * expf(row[j] - lse);
    if (j == tgt) d += g;
    dlogits[r * V + j] = __float2bfloat16_rn(d);
  }
}

HeadDims checked_head_dims(const char* op, const Tensor& logp, const Tensor& x, const Tensor& W,
                           const Tensor& targets) {
  cuda::check_dtype(op, "logp", logp, DType::F32);
  cuda::check_dtype(op, "x", x, DType::BF16);
  cuda::check_dtype(op, "W", W, DType::BF16);
  const HeadDims d = temper::head_dims(op, logp, x, W);
  cuda::check_i32(op, "targets", targets, d.N);
  return d;
}

int64_t chunk_rows(const HeadDims& d) {
  const int64_t by_bytes = CudaKernels::kLmHeadChunkBytes / (d.V * 6);
  return std::max<int64_t>(1, std::min({CudaKernels::kLmHeadMaxRows, by_bytes, std::max<int64_t>(d.N, 1)}));
}

}  // namespace

void CudaKernels::lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) {
  const char* op = "lm_head_logprobs";
  const HeadDims d = checked_head_dims(op, logp, x, W, targets);
  if (d.N == 0) return;
  const int64_t R = chunk_rows(d);
  Tensor logits = alloc({R, d.V}, DType::F32);
  const auto* xb = cuda::bf(x);
  for (int64_t r0 = 0; r0 < d.N; r0 += R) {
    const int64_t rows = std::min(R, d.N - r0);
    gemm(false, true, rows, d.V, d.C, 1.0f, xb + r0 * d.C, d.C, W.raw(), d.C, 0.0f, logits.raw(), DType::F32, d.V);
    log_softmax_rows<<<static_cast<unsigned>(rows), kThreads, 0, stream_>>>(
        cuda::f32(logp) + r0, nullptr, cuda::f32(logits), cuda::i32(targets) + r0, nullptr, d.V);
    TEMPER_CUDA_CHECK_LAUNCH();
  }
}

void CudaKernels::lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x, const Tensor& W,
                                            const Tensor& targets, const Tensor& dlogp) {
  const char* op = "lm_head_logprobs_backward";
  const HeadDims d = checked_head_dims(op, logp, x, W, targets);
  cuda::check_dtype(op, "dW", dW, DType::F32);
  cuda::check_shape(op, "dW", dW, W.shape());
  cuda::check_dtype(op, "dlogp", dlogp, DType::F32);
  cuda::check_shape(op, "dlogp", dlogp, {d.N});
  if (dx) {
    cuda::check_dtype(op, "dx", *dx, DType::BF16);
    cuda::check_shape(op, "dx", *dx, x.shape());
  }
  if (d.N == 0) return;
  const int64_t R = chunk_rows(d);
  Tensor logits = alloc({R, d.V}, DType::F32);
  Tensor dlogits = alloc({R, d.V}, DType::BF16);
  const auto* xb = cuda::bf(x);
  for (int64_t r0 = 0; r0 < d.N; r0 += R) {
    const int64_t rows = std::min(R, d.N - r0);
    const __nv_bfloat16* xc = xb + r0 * d.C;
    gemm(false, true, rows, d.V, d.C, 1.0f, xc, d.C, W.raw(), d.C, 0.0f, logits.raw(), DType::F32, d.V);
    log_softmax_rows<<<static_cast<unsigned>(rows), kThreads, 0, stream_>>>(cuda::f32(logp) + r0, cuda::bf(dlogits),
                                                                            cuda::f32(logits), cuda::i32(targets) + r0,
                                                                            cuda::f32(dlogp) + r0, d.V);
    TEMPER_CUDA_CHECK_LAUNCH();
    if (dx)
      gemm(false, false, rows, d.C, d.V, 1.0f, dlogits.raw(), d.V, W.raw(), d.C, 0.0f, cuda::bf(*dx) + r0 * d.C,
           DType::BF16, d.C);
    gemm(true, false, d.V, d.C, rows, 1.0f, dlogits.raw(), d.V, xc, d.C, 1.0f, dW.raw(), DType::F32, d.C);
  }
}

}  // namespace temper
