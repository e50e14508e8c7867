// CUDA backend: output head + per-token log-probabilities, chunked over tokens
// so logits are never materialised for all N rows. Per chunk of R rows:
//   logits[R, V] (f32) = x_chunk @ W^T                        (cublasGemmEx)
//   one block per row: lse = max + log sum exp (online), logp = logits[t] - lse
//   backward: dlogits[R, V] (bf16) = dlogp (onehot(t) - softmax(logits)), written
//             IN PLACE over the first half of each f32 logits row (row stride 2V
//             bf16 elements), so one buffer of 4 B per logit serves both;
//             dx_chunk = dlogits @ W (bf16, overwritten),  dW += dlogits^T @ x_chunk (f32)
// Rows with target < 0 get logp 0 and a zero dlogits row; targets >= V give NaN.
// Chunks: as few as kLmHeadMaxRows and the f32 buffer (R V 4 B under
// kLmHeadChunkBytes) allow, of equal size (a multiple of 64 rows when there are
// several), so the GEMMs see few, large, well-shaped products and dW [V, C] is
// re-read and re-written once per chunk only. Deterministic: no atomics; the
// chunking depends on N and V alone.
// The backward's softmax pass runs one thread-block cluster of 8 per row when
// V % 4 == 0 and V >= 1024 (TEMPER_LM_HEAD_CLUSTER=0: off): each block holds an
// eighth of the row in shared memory, the blocks exchange their (max, sum) through
// distributed shared memory, and the gradient is written from shared memory, so
// the f32 logits are read once (6 B per logit moved instead of 10).
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

constexpr int kThreads = 512;
constexpr int kPer = 4;  // consecutive logits per thread and pass-2 step

// Row r of the chunk (logits f32 [rows, V], row stride V); logp/targets/dlogp
// already offset to the chunk. With grad, the row's bf16 gradient is written over
// its own first half (bf16 row stride 2V). kVec: V % 4 == 0, so every row is
// 16-byte aligned and float4 / 8-byte accesses are used.
template <bool kVec>
__global__ void __launch_bounds__(kThreads) log_softmax_rows(float* logp, float* logits, const int32_t* targets,
                                                             const float* dlogp, int64_t V, bool grad) {
  __shared__ float scratch_max[32], scratch_sum[32];
  const int64_t r = blockIdx.x;
  float* row = logits + r * V;
  __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(row);
  const int32_t tgt = targets[r];
  const int64_t step = int64_t(blockDim.x) * kPer;
  if (tgt < 0) {
    if (threadIdx.x == 0) logp[r] = 0.0f;
    if (grad)  // no reads of the row: plain writes cannot race
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) out[j] = __float2bfloat16_rn(0.0f);
    return;
  }
  // Pass 1: online max / sum of exp over the row.
  float m = -INFINITY, s = 0.0f;
  for (int64_t j0 = int64_t(threadIdx.x) * kPer; j0 < V; j0 += step) {
    float v[kPer];
    if (kVec) {
      const float4 q = *reinterpret_cast<const float4*>(row + j0);
      v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
#pragma unroll
      for (int k = 0; k < kPer; ++k) v[k] = j0 + k < V ? row[j0 + k] : -INFINITY;
    }
    float mx = fmaxf(fmaxf(v[0], v[1]), fmaxf(v[2], v[3]));
    if (mx > m) {
      s = m == -INFINITY ? 0.0f : s * expf(m - mx);
      m = mx;
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) s += v[k] == -INFINITY ? 0.0f : expf(v[k] - m);
  }
  const float M = cuda::block_max(m, scratch_max);
  const float part = (m == -INFINITY) ? 0.0f : s * expf(m - M);
  const float S = cuda::block_sum(part, scratch_sum);
  const float lse = M + logf(S);
  // Read before any thread writes (the first pass-2 step has a barrier).
  if (threadIdx.x == 0) logp[r] = tgt < V ? row[tgt] - lse : __int_as_float(0x7fc00000);
  if (!grad) return;
  const float g = dlogp[r];
  // Pass 2, in place. Step i reads f32 [b, b + 4T) and, after the barrier, writes
  // bf16 [b, b + 4T) = the bytes of f32 [b/2, b/2 + 2T): all read in this or an
  // earlier step (every thread passed this step's barrier), none read later.
  // The trip count is the same for all threads (the barrier needs them all).
  for (int64_t b = 0; b < V; b += step) {
    const int64_t j0 = b + int64_t(threadIdx.x) * kPer;
    float v[kPer];
    if (kVec) {
      float4 q = make_float4(0.f, 0.f, 0.f, 0.f);
      if (j0 < V) q = *reinterpret_cast<const float4*>(row + j0);
      v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
#pragma unroll
      for (int k = 0; k < kPer; ++k) v[k] = j0 + k < V ? row[j0 + k] : 0.0f;
    }
    __syncthreads();
    __nv_bfloat16 d[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      float x = -g * expf(v[k] - lse);
      if (j0 + k == tgt) x += g;
      d[k] = __float2bfloat16_rn(x);
    }
    if (kVec) {
      if (j0 < V) {
        __nv_bfloat162 lo, hi;
        lo.x = d[0], lo.y = d[1], hi.x = d[2], hi.y = d[3];
        uint2 u;
        u.x = *reinterpret_cast<const uint32_t*>(&lo);
        u.y = *reinterpret_cast<const uint32_t*>(&hi);
        *reinterpret_cast<uint2*>(out + j0) = u;
      }
    } else {
#pragma unroll
      for (int k = 0; k < kPer; ++k)
        if (j0 + k < V) out[j0 + k] = d[k];
    }
  }
}

namespace cg = cooperative_groups;
constexpr int kCluster = 8;

// One cluster of kCluster blocks per row r = blockIdx.x / kCluster; block k owns
// the f32 slice [k L, k L + L) of the row (L % 4 == 0, V % 4 == 0), kept in
// dynamic shared memory. Gradient only (the forward keeps log_softmax_rows).
__global__ void __cluster_dims__(kCluster, 1, 1) __launch_bounds__(kThreads)
    softmax_grad_rows_cluster(float* logp, float* logits, const int32_t* targets, const float* dlogp, int64_t V,
                              int64_t L) {
  extern __shared__ float4 slice4[];
  __shared__ float scratch_max[32], scratch_sum[32];
  __shared__ float stat[2];
  cg::cluster_group cluster = cg::this_cluster();
  const int64_t k = cluster.block_rank();
  const int64_t r = blockIdx.x / kCluster;
  float* row = logits + r * V;
  __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(row);
  const int32_t tgt = targets[r];
  const int64_t a = std::min(V, k * L), b = std::min(V, a + L), n4 = (b - a) / 4;
  if (tgt < 0) {  // the same in every block of the cluster: no reads, no cluster barrier
    if (k == 0 && threadIdx.x == 0) logp[r] = 0.0f;
    for (int64_t j = a + threadIdx.x; j < b; j += blockDim.x) out[j] = __float2bfloat16_rn(0.0f);
    return;
  }
  float m = -INFINITY, s = 0.0f;
  for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
    const float4 q = *reinterpret_cast<const float4*>(row + a + 4 * i);
    slice4[i] = q;
    const float mx = fmaxf(fmaxf(q.x, q.y), fmaxf(q.z, q.w));
    if (mx > m) {
      s = m == -INFINITY ? 0.0f : s * expf(m - mx);
      m = mx;
    }
    s += expf(q.x - m) + expf(q.y - m) + expf(q.z - m) + expf(q.w - m);
  }
  const float Mk = cuda::block_max(m, scratch_max);
  const float Sk = cuda::block_sum((m == -INFINITY) ? 0.0f : s * expf(m - Mk), scratch_sum);
  if (threadIdx.x == 0) stat[0] = Mk, stat[1] = Sk;
  // Every block's stats are written and every slice has left global memory, so
  // the in-place writes below (bytes of other blocks' slices) cannot race.
  cluster.sync();
  float M = -INFINITY, st_m[kCluster], st_s[kCluster];
#pragma unroll
  for (int j = 0; j < kCluster; ++j) {
    const float* o = cluster.map_shared_rank(stat, j);
    st_m[j] = o[0], st_s[j] = o[1];
    M = fmaxf(M, st_m[j]);
  }
  float S = 0.0f;
#pragma unroll
  for (int j = 0; j < kCluster; ++j) S += st_m[j] == -INFINITY ? 0.0f : st_s[j] * expf(st_m[j] - M);
  const float lse = M + logf(S);
  cluster.sync();  // no block leaves while another still reads its stats
  const float* slice = reinterpret_cast<const float*>(slice4);
  if (threadIdx.x == 0) {
    if (tgt >= a && tgt < b) logp[r] = slice[tgt - a] - lse;
    if (k == 0 && tgt >= V) logp[r] = __int_as_float(0x7fc00000);
  }
  const float g = dlogp[r];
  for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
    const float4 q = slice4[i];
    const int64_t j0 = a + 4 * i;
    float x[4] = {-g * expf(q.x - lse), -g * expf(q.y - lse), -g * expf(q.z - lse), -g * expf(q.w - lse)};
    if (tgt >= j0 && tgt < j0 + 4) x[tgt - j0] += g;
    const __nv_bfloat162 lo = __floats2bfloat162_rn(x[0], x[1]), hi = __floats2bfloat162_rn(x[2], x[3]);
    uint2 u;
    std::memcpy(&u.x, &lo, 4);
    std::memcpy(&u.y, &hi, 4);
    *reinterpret_cast<uint2*>(out + j0) = u;
  }
}

// Slice length of the cluster kernel (floats, a multiple of 4), 0 when it does not apply.
int64_t cluster_slice(int64_t V) {
  const char* e = std::getenv("TEMPER_LM_HEAD_CLUSTER");
  if (e != nullptr && std::string(e) == "0") return 0;
  if (V % 4 != 0 || V < 1024) return 0;
  const int64_t L = ((V + kCluster - 1) / kCluster + 3) / 4 * 4;
  return L * 4 <= (int64_t(200) << 10) ? L : 0;  // shared memory per block
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

void softmax_rows(cudaStream_t stream, float* logp, float* logits, const int32_t* targets, const float* dlogp,
                  int64_t rows, int64_t V, bool grad) {
  if (const int64_t L = grad ? cluster_slice(V) : 0) {
    const size_t smem = size_t(L) * sizeof(float);
    if (smem > 48 * 1024)  // per device and cheap: set on every call
      TEMPER_CUDA_CHECK(
          cudaFuncSetAttribute(softmax_grad_rows_cluster, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    softmax_grad_rows_cluster<<<static_cast<unsigned>(rows * kCluster), kThreads, smem, stream>>>(logp, logits, targets,
                                                                                                 dlogp, V, L);
    TEMPER_CUDA_CHECK_LAUNCH();
    return;
  }
  if (V % 4 == 0)
    log_softmax_rows<true><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logp, logits, targets, dlogp, V, grad);
  else
    log_softmax_rows<false><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logp, logits, targets, dlogp, V,
                                                                                  grad);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace

int64_t CudaKernels::lm_head_chunk_rows(int64_t N, int64_t V) {
  const int64_t cap = std::max<int64_t>(
      1, std::min<int64_t>(kLmHeadMaxRows, kLmHeadChunkBytes / (std::max<int64_t>(V, 1) * kLmHeadBytesPerLogit)));
  const int64_t n = std::max<int64_t>(N, 1);
  if (n <= cap) return n;
  const int64_t chunks = (n + cap - 1) / cap;
  const int64_t even = (n + chunks - 1) / chunks;
  return std::min(cap, (even + 63) / 64 * 64);
}

void CudaKernels::lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) {
  const char* op = "lm_head_logprobs";
  const HeadDims d = checked_head_dims(op, logp, x, W, targets);
  if (d.N == 0) return;
  const int64_t R = lm_head_chunk_rows(d.N, d.V);
  Tensor logits = alloc({R, d.V}, DType::F32);
  const auto* xb = cuda::bf(x);
  for (int64_t r0 = 0; r0 < d.N; r0 += R) {
    const int64_t rows = std::min(R, d.N - r0);
    gemm(false, true, rows, d.V, d.C, 1.0f, xb + r0 * d.C, d.C, W.raw(), d.C, 0.0f, logits.raw(), DType::F32, d.V);
    softmax_rows(stream_, cuda::f32(logp) + r0, cuda::f32(logits), cuda::i32(targets) + r0, nullptr, rows, d.V,
                 false);
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
  const int64_t R = lm_head_chunk_rows(d.N, d.V);
  Tensor logits = alloc({R, d.V}, DType::F32);  // f32 logits, then bf16 dlogits in place
  const auto* xb = cuda::bf(x);
  const int64_t ldd = 2 * d.V;  // bf16 row stride of the in-place gradients
  for (int64_t r0 = 0; r0 < d.N; r0 += R) {
    const int64_t rows = std::min(R, d.N - r0);
    const __nv_bfloat16* xc = xb + r0 * d.C;
    gemm(false, true, rows, d.V, d.C, 1.0f, xc, d.C, W.raw(), d.C, 0.0f, logits.raw(), DType::F32, d.V);
    softmax_rows(stream_, cuda::f32(logp) + r0, cuda::f32(logits), cuda::i32(targets) + r0, cuda::f32(dlogp) + r0,
                 rows, d.V, true);
    if (dx)
      gemm(false, false, rows, d.C, d.V, 1.0f, logits.raw(), ldd, W.raw(), d.C, 0.0f, cuda::bf(*dx) + r0 * d.C,
           DType::BF16, d.C);
    gemm(true, false, d.V, d.C, rows, 1.0f, logits.raw(), ldd, xc, d.C, 1.0f, dW.raw(), DType::F32, d.C);
  }
}

}  // namespace temper
