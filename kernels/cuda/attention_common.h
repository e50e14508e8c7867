// Shared by attention_forward.cu, attention_backward.cu and attention_cached.cu:
// shape checks, document lookups in cu_seqlens on the device, the tile layout
// of the scalar fallback kernels, and the tensor-core building blocks of the
// flash kernels (cp.async 16-byte copies, ldmatrix, mma.sync m16n8k16 bf16).
//
// Scalar fallback (any D <= 128). A block owns a tile of 32 query rows
// (forward, dq) or 32 key rows (dk/dv) of one head, 256 threads: thread t
// works on tile row t/8 with 8 threads per row. Tiles may straddle documents:
// every score is masked with j >= doc_begin(i) and j <= i.
//
// Tensor-core path (D = 64 or 128, 16-byte aligned tensors). Fragments follow
// the PTX ISA layout of mma.m16n8k16 with lane = 4 * grp + tig:
//   A 16x16 (row major): a0 (grp, 2tig..+1), a1 (grp+8, 2tig..), a2 (grp, 8+2tig..), a3 (grp+8, 8+2tig..)
//   B 16x8 (k x n):      b0 (k 2tig..+1, n grp), b1 (k 8+2tig..+1, n grp)
//   C 16x8 f32:          c0,c1 (grp, 2tig..+1), c2,c3 (grp+8, 2tig..+1)
// so the C fragments of two neighbouring 8-column tiles, packed to bf16, are
// the A fragment of one 16-deep k step (P @ V without a trip through memory).
// Shared-memory tiles are bf16 rows of D + 8 elements: the 16-byte pad moves
// consecutive rows four banks apart, so ldmatrix's eight row reads of one
// 8x8 matrix hit distinct banks.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/attention_variant.h"
#include "kernels/cuda/cuda_common.h"

namespace temper::cuda::attn {

constexpr int kTile = 32;      // scalar fallback: query rows and key rows per tile
constexpr int kThreads = 256;  // scalar fallback: 8 threads per tile row
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

// True when every pointer is 16-byte aligned (cp.async and vector accesses).
inline bool aligned16(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (reinterpret_cast<uintptr_t>(t->raw()) % 16 != 0) return false;
  return true;
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

// ---- scalar fallback helpers -------------------------------------------------

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

// ---- tensor-core building blocks ---------------------------------------------

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; when !valid the destination is zero-filled
// and the source is not read (it must still be a mapped address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 bf16 matrices; lanes 8m..8m+7 give the row addresses of matrix m.
__device__ __forceinline__ void ldsm_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_addr(p)));
}

// c += a @ b, m16n8k16, bf16 inputs, f32 accumulators.
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// p[0] += a, p[1] += b in global memory (p 8-byte aligned): one vector
// reduction on sm_90, two scalar ones elsewhere.
__device__ __forceinline__ void atomic_add2(float* p, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(p), make_float2(a, b));
#else
  atomicAdd(p, a);
  atomicAdd(p + 1, b);
#endif
}

// Two floats -> packed bf16x2 (lo in the low half).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Loads `rows` rows of one head of x[N, heads, D] (row0.., rows past N zero)
// into a padded smem tile (ld = D + 8) with 16-byte cp.async; all threads of
// the block take part. Not committed: the caller groups the copies.
template <int D, int NT>
__device__ __forceinline__ void cp_tile(__nv_bfloat16* dst, const __nv_bfloat16* x, int row0, int rows, int N,
                                        int heads, int head) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  for (int idx = threadIdx.x; idx < rows * kChunks; idx += NT) {
    const int r = idx / kChunks, c = (idx - r * kChunks) * 8;
    const int i = row0 + r;
    const bool ok = i < N && i >= 0;
    const __nv_bfloat16* src = x + ((int64_t(ok ? i : 0) * heads + head) * D + c);
    cp_async16(dst + r * (D + 8) + c, src, ok);
  }
}

// Forward variant v2 (attention_forward_v2.cu): D = 64 or 128, 16-byte aligned tensors.
void flash_forward_v2(cudaStream_t stream, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Tensor& cu, const Dims& d);

}  // namespace temper::cuda::attn
