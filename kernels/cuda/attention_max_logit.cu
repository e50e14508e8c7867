// CUDA backend: the largest pre-softmax attention logit per query head
// (QK-clip), out[h] = max(out[h], max_{j <= i in i's document} q_i,h . k_j,g / sqrt(D)).
// A plain kernel, not a fused one: one block of 128 threads per (query token,
// head) holds q_i in shared memory, its threads stride over the keys of the
// document, and the block maximum goes to out[h] with an atomic float max.
// O(N^2 H D) like attention itself; it runs only when qk_clip is on.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

constexpr int kThreads = 128;

// Float max through integer atomics: non-negative floats order like signed
// ints, negative ones reversed like unsigned ints.
__device__ void atomic_max_float(float* addr, float v) {
  if (v >= 0.0f)
    atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
  else
    atomicMin(reinterpret_cast<unsigned*>(addr), __float_as_uint(v));
}

__global__ void max_logit_kernel(float* out, const __nv_bfloat16* q, const __nv_bfloat16* k, const int32_t* cu,
                                 int64_t S, int64_t H, int64_t KVH, int64_t D, float scale) {
  extern __shared__ float qs[];
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x, h = blockIdx.y, g = h / (H / KVH);
  for (int64_t e = threadIdx.x; e < D; e += blockDim.x) qs[e] = __bfloat162float(q[(i * H + h) * D + e]);
  // the document of token i: the last s with cu[s] <= i (binary search)
  int64_t lo = 0, hi = S;  // cu[lo] <= i < cu[hi]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (cu[mid] <= i) lo = mid; else hi = mid;
  }
  const int64_t begin = cu[lo];
  __syncthreads();
  float best = -INFINITY;
  for (int64_t j = begin + threadIdx.x; j <= i; j += blockDim.x) {
    const __nv_bfloat16* kj = k + (j * KVH + g) * D;
    float acc = 0.0f;
    for (int64_t e = 0; e < D; ++e) acc += qs[e] * __bfloat162float(kj[e]);
    best = fmaxf(best, acc * scale);
  }
  best = cuda::block_max(best, scratch);
  if (threadIdx.x == 0) atomic_max_float(out + h, best);
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
  TEMPER_CHECK(H <= 65535, op, ": ", H, " heads are more than one grid dimension holds");
  if (N == 0) return;
  dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>(H));
  max_logit_kernel<<<grid, kThreads, size_t(D) * sizeof(float), stream_>>>(
      cuda::f32(out), cuda::bf(q), cuda::bf(k), cuda::i32(cu_seqlens), cu_seqlens.numel() - 1, H, KVH, D,
      1.0f / sqrtf(float(D)));
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
