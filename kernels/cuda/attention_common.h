// Shared by attention_forward.cu and attention_backward.cu: shape checks, the
// tile sizes and thread layout of the tiled kernels, and document lookups in
// cu_seqlens on the device.
//
// Tiling. A block owns a tile of 32 query rows (forward, dq) or 32 key rows
// (dk/dv) of one head, 256 threads: thread t works on tile row t/8 with 8
// threads per row; a score tile [32 x 32] gives each thread 4 scores (columns
// t%8 + 8k), and a [32 x D] output tile gives it D/8 columns (t%8 + 8k).
// Tiles may straddle documents: the key range of a query tile runs from the
// document start of its first row to its last row, and every score is masked
// with j >= doc_begin(i) and j <= i, so no [N x N] matrix is ever formed.
// Shared-memory rows are padded to D+1 floats to avoid bank conflicts.
#pragma once
#include "kernels/cuda/cuda_common.h"

namespace temper::cuda::attn {

constexpr int kTile = 32;      // query rows and key rows per tile
constexpr int kThreads = 256;  // 8 threads per tile row
constexpr int kMaxD = 128;

struct Dims {
  int N, H, KVH, D, S;
};

inline Dims check_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                       int max_seqlen) {
  check_dtype(op, "q", q, DType::BF16);
  check_dtype(op, "k", k, DType::BF16);
  check_dtype(op, "v", v, DType::BF16);
  TEMPER_CHECK(q.ndim() == 3, op, ": 'q' must be [N, H, D], got ", shape_str(q.shape()));
  TEMPER_CHECK(k.ndim() == 3 && k.dim(0) == q.dim(0) && k.dim(2) == q.dim(2), op, ": 'k' has shape ",
               shape_str(k.shape()), ", expected [", q.dim(0), ", KVH, ", q.dim(2), "] to match 'q' ",
               shape_str(q.shape()));
  check_shape(op, "v", v, k.shape());
  TEMPER_CHECK(q.dim(0) < (int64_t(1) << 31) && q.dim(1) <= 65535, op, ": 'q' ", shape_str(q.shape()),
               " is too large (N < 2^31 tokens, H <= 65535 heads)");
  Dims d{int(q.dim(0)), int(q.dim(1)), int(k.dim(1)), int(q.dim(2)), 0};
  TEMPER_CHECK(d.KVH > 0 && d.H % d.KVH == 0, op, ": query heads H = ", d.H,
               " must be a multiple of kv heads KVH = ", d.KVH);
  TEMPER_CHECK(d.D > 0 && d.D <= kMaxD, op, ": head dimension D = ", d.D, " is not supported (1..", kMaxD, ")");
  TEMPER_CHECK(cu_seqlens.numel() >= 1, op, ": 'cu_seqlens' must have S+1 >= 1 elements");
  check_i32(op, "cu_seqlens", cu_seqlens, cu_seqlens.numel());
  d.S = int(cu_seqlens.numel() - 1);
  TEMPER_CHECK(d.N == 0 || d.S >= 1, op, ": 'cu_seqlens' has no documents but there are ", d.N, " tokens");
  TEMPER_CHECK(d.N == 0 || max_seqlen >= 1, op, ": max_seqlen must be positive, got ", max_seqlen);
  return d;
}

// Index s of the document holding token i: the largest s with cu[s] <= i
// (empty documents are skipped because cu[s+1] > i for the one found).
__device__ __forceinline__ int doc_of(const int32_t* cu, int S, int i) {
  int lo = 0, hi = S;  // invariant: cu[lo] <= i < cu[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (cu[mid] <= i)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// Max / sum over the 8 threads of one tile row (lanes 8r .. 8r+7 of a warp).
__device__ __forceinline__ float row_max8(float x) {
  for (int o = 4; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float row_sum8(float x) {
  for (int o = 4; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Loads rows [row0, row0 + kTile) of head `head` of x[N, heads, D] into a
// padded f32 tile (ld = D + 1); rows past N are zero.
__device__ __forceinline__ void load_tile(float* dst, const __nv_bfloat16* x, int row0, int N, int heads, int head,
                                          int D) {
  const int ld = D + 1;
  for (int idx = threadIdx.x; idx < kTile * D; idx += blockDim.x) {
    const int r = idx / D, c = idx - r * D;
    const int i = row0 + r;
    dst[r * ld + c] = i < N ? __bfloat162float(x[(int64_t(i) * heads + head) * D + c]) : 0.0f;
  }
}

// dot of two padded tile rows
__device__ __forceinline__ float dot_rows(const float* a, const float* b, int D) {
  float s = 0.0f;
#pragma unroll 8
  for (int c = 0; c < D; ++c) s = fmaf(a[c], b[c], s);
  return s;
}

// Dynamic shared memory above 48 KiB must be opted into per kernel.
template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes) {
  TEMPER_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace temper::cuda::attn
