// CUDA backend: the largest pre-softmax attention logit per query head
// (QK-clip), out[h] = max(out[h], max_{j <= i in i's document} q_i,h . k_j,g / sqrt(D)).
// The scores go through tensor-core GEMMs, a chunk of query rows at a time:
// for query rows [i0, i1) and head h, S = Q[i0:i1, h] K[0:i1, g]^T (f32, cuBLAS
// through CudaKernels::gemm, strided views of q and k), then one block per row
// takes the maximum over the keys of its own document at or before it and
// merges it into out[h] with an atomic float max. Chunks keep the f32 score
// buffer under kScoreElems; keys after i1 are never computed (causal).
#include <algorithm>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kScoreElems = int64_t(1) << 25;  // 128 MiB of f32 scores per chunk

// Float max through integer atomics: non-negative floats order like signed
// ints, negative ones reversed like unsigned ints.
__device__ void atomic_max_float(float* addr, float v) {
  if (v >= 0.0f)
    atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
  else
    atomicMin(reinterpret_cast<unsigned*>(addr), __float_as_uint(v));
}

// Row r of scores [rows, ldc] is query i0 + r; keys j in [doc begin, i].
__global__ void row_max_kernel(float* out_h, const float* scores, int64_t ldc, int64_t i0, const int32_t* cu,
                               int64_t S, float scale) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x, i = i0 + r;
  int64_t lo = 0, hi = S;  // the document of i: cu[lo] <= i < cu[hi]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (cu[mid] <= i) lo = mid; else hi = mid;
  }
  const float* row = scores + r * ldc;
  float best = -INFINITY;
  for (int64_t j = cu[lo] + threadIdx.x; j <= i; j += blockDim.x) best = fmaxf(best, row[j]);
  best = cuda::block_max(best, scratch);
  if (threadIdx.x == 0) atomic_max_float(out_h, best * scale);
}

}  // namespace

void CudaKernels::attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                                      int max_seqlen) {
  const char* op = "attention_max_logit";
  cuda::check_dtype(op, "q", q, DType::BF16);
  cuda::check_dtype(op, "k", k, DType::BF16);
  cuda::check_dtype(op, "out", out, DType::F32);
  const QkDims dims = max_logit_dims(op, out, q, k);
  const int64_t N = dims.N, H = dims.H, KVH = dims.KVH, D = dims.D;
  TEMPER_CHECK(cu_seqlens.numel() >= 2, op, ": 'cu_seqlens' must have S+1 >= 2 elements");
  cuda::check_i32(op, "cu_seqlens", cu_seqlens, cu_seqlens.numel());
  TEMPER_CHECK(max_seqlen >= 0, op, ": max_seqlen must be >= 0");
  if (N == 0) return;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, kScoreElems / N));
  Tensor scores = alloc({chunk * N}, DType::F32);
  const float scale = 1.0f / sqrtf(float(D));
  const auto* qb = static_cast<const __nv_bfloat16*>(q.raw());
  const auto* kb = static_cast<const __nv_bfloat16*>(k.raw());
  for (int64_t i0 = 0; i0 < N; i0 += chunk) {
    const int64_t i1 = std::min(N, i0 + chunk), rows = i1 - i0;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / KVH);
      // scores[rows, i1] = Q[i0:i1, h, :] @ K[0:i1, g, :]^T
      gemm(false, true, rows, i1, D, 1.0f, qb + (i0 * H + h) * D, H * D, kb + g * D, KVH * D, 0.0f, scores.raw(),
           DType::F32, i1);
      row_max_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream_>>>(
          cuda::f32(out) + h, cuda::f32(scores), i1, i0, cuda::i32(cu_seqlens), cu_seqlens.numel() - 1, scale);
      TEMPER_CUDA_CHECK_LAUNCH();
    }
  }
}

}  // namespace temper
