// CUDA backend: SwiGLU on a fused gate|up tensor gu[N, 2F] (bf16), f32 math.
//   out = silu(g) * u
//   dg = dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))),  du = dout * silu(g)
#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void swiglu_fwd_kernel(__nv_bfloat16* out, const __nv_bfloat16* gu, int64_t rows, int64_t F) {
  const int64_t total = rows * F;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / F, f = i % F;
    const float g = __bfloat162float(gu[r * 2 * F + f]), u = __bfloat162float(gu[r * 2 * F + F + f]);
    out[i] = __float2bfloat16_rn(g * sigmoidf(g) * u);
  }
}

__global__ void swiglu_bwd_kernel(__nv_bfloat16* dgu, const __nv_bfloat16* dout, const __nv_bfloat16* gu, int64_t rows,
                                  int64_t F) {
  const int64_t total = rows * F;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / F, f = i % F;
    const float g = __bfloat162float(gu[r * 2 * F + f]), u = __bfloat162float(gu[r * 2 * F + F + f]);
    const float dy = __bfloat162float(dout[i]);
    const float sg = sigmoidf(g);
    dgu[r * 2 * F + f] = __float2bfloat16_rn(dy * u * sg * (1.0f + g * (1.0f - sg)));
    dgu[r * 2 * F + F + f] = __float2bfloat16_rn(dy * g * sg);
  }
}

// 8 columns per thread with 16-byte accesses (F % 8 == 0, pointers 16-byte aligned).
__device__ __forceinline__ void ld8(float* f, const __nv_bfloat16* p) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 t = __bfloat1622float2(h[j]);
    f[2 * j] = t.x;
    f[2 * j + 1] = t.y;
  }
}
__device__ __forceinline__ void st8(__nv_bfloat16* p, const float* f) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

__global__ void swiglu_fwd_vec8(__nv_bfloat16* out, const __nv_bfloat16* gu, int64_t rows, int64_t F) {
  const int64_t F8 = F / 8, total = rows * F8;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / F8, f = (i - r * F8) * 8;
    float g[8], u[8], o[8];
    ld8(g, gu + r * 2 * F + f);
    ld8(u, gu + r * 2 * F + F + f);
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j] = g[j] * sigmoidf(g[j]) * u[j];
    st8(out + r * F + f, o);
  }
}

__global__ void swiglu_bwd_vec8(__nv_bfloat16* dgu, const __nv_bfloat16* dout, const __nv_bfloat16* gu, int64_t rows,
                                int64_t F) {
  const int64_t F8 = F / 8, total = rows * F8;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / F8, f = (i - r * F8) * 8;
    float g[8], u[8], dy[8], dg[8], du[8];
    ld8(g, gu + r * 2 * F + f);
    ld8(u, gu + r * 2 * F + F + f);
    ld8(dy, dout + r * F + f);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float sg = sigmoidf(g[j]);
      dg[j] = dy[j] * u[j] * sg * (1.0f + g[j] * (1.0f - sg));
      du[j] = dy[j] * g[j] * sg;
    }
    st8(dgu + r * 2 * F + f, dg);
    st8(dgu + r * 2 * F + F + f, du);
  }
}

bool vec8_ok(int64_t F, std::initializer_list<const Tensor*> ts) {
  if (F % 8 != 0) return false;
  for (const Tensor* t : ts)
    if (reinterpret_cast<uintptr_t>(t->raw()) % 16 != 0) return false;
  return true;
}

int64_t swiglu_width(const char* op, const Tensor& gu, const Tensor& half, const char* half_name) {
  TEMPER_CHECK(gu.ndim() >= 1 && gu.dim(-1) % 2 == 0, op, ": 'gu' must be [..., 2F], got ", shape_str(gu.shape()));
  Shape want = gu.shape();
  want.back() /= 2;
  cuda::check_shape(op, half_name, half, want);
  return want.back();
}

}  // namespace

void CudaKernels::swiglu_forward(Tensor& out, const Tensor& gu) {
  const char* op = "swiglu_forward";
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "gu", gu, DType::BF16);
  const int64_t F = swiglu_width(op, gu, out, "out");
  const int64_t rows = F > 0 ? out.numel() / F : 0;
  if (rows * F == 0) return;
  if (vec8_ok(F, {&out, &gu}))
    swiglu_fwd_vec8<<<cuda::grid_stride_blocks(rows * F / 8, op), 256, 0, stream_>>>(cuda::bf(out), cuda::bf(gu),
                                                                                      rows, F);
  else
    swiglu_fwd_kernel<<<cuda::grid_stride_blocks(rows * F, op), 256, 0, stream_>>>(cuda::bf(out), cuda::bf(gu), rows,
                                                                                   F);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) {
  const char* op = "swiglu_backward";
  cuda::check_dtype(op, "dgu", dgu, DType::BF16);
  cuda::check_dtype(op, "dout", dout, DType::BF16);
  cuda::check_dtype(op, "gu", gu, DType::BF16);
  const int64_t F = swiglu_width(op, gu, dout, "dout");
  cuda::check_shape(op, "dgu", dgu, gu.shape());
  const int64_t rows = F > 0 ? dout.numel() / F : 0;
  if (rows * F == 0) return;
  if (vec8_ok(F, {&dgu, &dout, &gu}))
    swiglu_bwd_vec8<<<cuda::grid_stride_blocks(rows * F / 8, op), 256, 0, stream_>>>(cuda::bf(dgu), cuda::bf(dout),
                                                                                      cuda::bf(gu), rows, F);
  else
    swiglu_bwd_kernel<<<cuda::grid_stride_blocks(rows * F, op), 256, 0, stream_>>>(cuda::bf(dgu), cuda::bf(dout),
                                                                                   cuda::bf(gu), rows, F);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
