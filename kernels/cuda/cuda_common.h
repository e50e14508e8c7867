// Helpers shared by the CUDA kernel files: error-checking macros for the CUDA
// runtime and cuBLAS (they throw temper::Error with file:line and the error
// string), argument checks that name the op and the tensor, launch-size
// helpers, bf16/f32 load-store on the device and warp/block reductions.
// Private to kernels/cuda (it includes the CUDA headers).
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "core/tensor.h"
#include "kernels/op_checks.h"

namespace temper::cuda {

[[noreturn]] void fail_cuda(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t st, const char* expr, const char* file, int line);

}  // namespace temper::cuda

#define TEMPER_CUDA_CHECK(expr)                                                                        \
  do {                                                                                                 \
    cudaError_t temper_err_ = (expr);                                                                  \
    if (temper_err_ != cudaSuccess) ::temper::cuda::fail_cuda(temper_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define TEMPER_CUBLAS_CHECK(expr)                                                                                \
  do {                                                                                                           \
    cublasStatus_t temper_st_ = (expr);                                                                          \
    if (temper_st_ != CUBLAS_STATUS_SUCCESS) ::temper::cuda::fail_cublas(temper_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: catches bad launch configurations at once.
#define TEMPER_CUDA_CHECK_LAUNCH() TEMPER_CUDA_CHECK(cudaGetLastError())

namespace temper::cuda {

using NamedTensor = std::pair<const char*, const Tensor*>;

// Every tensor must be allocated and live on the CUDA device.
void check_on_device(const char* op, std::initializer_list<NamedTensor> ts);
// On the device and of the given dtype.
void check_dtype(const char* op, const char* name, const Tensor& t, DType want);
using temper::check_shape;  // kernels/op_checks.h
// An i32 index tensor of n elements on the device.
void check_i32(const char* op, const char* name, const Tensor& t, int64_t n);

// Blocks of `threads` covering n items; refuses grids that overflow.
unsigned grid_for(int64_t n, int threads, const char* op);
// Blocks of 256 threads for a grid-stride loop over n items (at most 2^16 blocks).
inline unsigned grid_stride_blocks(int64_t n, const char* op) {
  return grid_for(n < (int64_t(1) << 24) ? n : (int64_t(1) << 24), 256, op);
}

// ---- device helpers --------------------------------------------------------
__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ double ld(const double* p, int64_t i) { return p[i]; }
__device__ __forceinline__ void st(float* p, int64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void st(__nv_bfloat16* p, int64_t i, float x) { p[i] = __float2bfloat16_rn(x); }
__device__ __forceinline__ void st(double* p, int64_t i, double x) { p[i] = x; }

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `scratch` holds 32 values; callers may reuse it
// after the call returns.
template <typename T>
__device__ T block_sum(T x, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  x = warp_sum(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  T v = lane < nwarps ? scratch[lane] : T(0);
  return warp_sum(v);
}

__device__ inline float block_max(float x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float v = lane < nwarps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// 8 bf16 <-> 8 floats through one 16-byte access (the pointer 16-byte aligned).
__device__ __forceinline__ void load8(float* f, const __nv_bfloat16* p) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 t = __bfloat1622float2(h[j]);
    f[2 * j] = t.x;
    f[2 * j + 1] = t.y;
  }
}
__device__ __forceinline__ void store8(__nv_bfloat16* p, const float* f) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

// Pointers of an activation tensor (bf16 on this backend).
inline __nv_bfloat16* bf(const Tensor& t) { return static_cast<__nv_bfloat16*>(t.raw()); }
inline float* f32(const Tensor& t) { return static_cast<float*>(t.raw()); }
inline int32_t* i32(const Tensor& t) { return static_cast<int32_t*>(t.raw()); }

}  // namespace temper::cuda
