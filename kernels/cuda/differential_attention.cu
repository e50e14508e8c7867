// CUDA backend: the combination step of (grouped) differential attention
// (kernels.h diff_attn_combine_*), bf16 in/out, f32 math.
//   lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init, s = 1 - lambda_init
//   y = a1[n,h] - lambda a2[n,g(h)],  out = s w y rstd,  rstd = 1/sqrt(mean_D(y^2) + eps)
// (D: the combined width, 2 x head_dim in the released layout; lam rows have their own length Dl)
// Forward: one warp per (token, signal head); each block first computes lambda
// from lam[4,D] (two dot products) into shared memory.
// Backward: one warp per (token, noise head) walks the H/G signal heads of its
// group, writing da1 and summing da2 = -lambda sum dy in registers (D <= 256:
// 8 columns per lane); dw and dlambda are summed per block (registers, then
// shared memory in warp order) into per-block partials, added in a fixed order
// (column_sums.h: bitwise the same from run to run); a one-block kernel turns
// dlambda into the gradients of lq1, lk1, lq2, lk2.
#include "kernels/cuda/column_sums.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/motif_op_checks.h"

namespace temper {

namespace {

constexpr int kWarps = 8;
constexpr int kMaxD = 256;
constexpr int kCols = kMaxD / 32;  // columns per lane

// e1 = exp(lq1 . lk1), e2 = exp(lq2 . lk2) by one warp (every lane gets them).
__device__ void lambda_exps(const __nv_bfloat16* lam, int64_t D, float& e1, float& e2) {
  const int lane = threadIdx.x & 31;
  float d1 = 0.f, d2 = 0.f;
  for (int64_t i = lane; i < D; i += 32) {
    d1 += __bfloat162float(lam[i]) * __bfloat162float(lam[D + i]);
    d2 += __bfloat162float(lam[2 * D + i]) * __bfloat162float(lam[3 * D + i]);
  }
  e1 = expf(cuda::warp_sum(d1));
  e2 = expf(cuda::warp_sum(d2));
}

__global__ void combine_fwd_kernel(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* a1, const __nv_bfloat16* a2,
                                   const __nv_bfloat16* lam, const __nv_bfloat16* w, int64_t N, int64_t H, int64_t G,
                                   int64_t D, int64_t Dl, float lambda_init, float eps) {
  __shared__ float s_lambda;
  if (threadIdx.x < 32) {
    float e1, e2;
    lambda_exps(lam, Dl, e1, e2);
    if (threadIdx.x == 0) s_lambda = e1 - e2 + lambda_init;
  }
  __syncthreads();
  const float lambda = s_lambda, s = 1.0f - lambda_init;
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);  // n * H + h
  const int lane = threadIdx.x & 31;
  if (row >= N * H) return;
  const int64_t n = row / H, h = row % H;
  const __nv_bfloat16* p1 = a1 + row * D;
  const __nv_bfloat16* p2 = a2 + (n * G + h / (H / G)) * D;
  float ss = 0.f;
  for (int64_t i = lane; i < D; i += 32) {
    const float y = __bfloat162float(p1[i]) - lambda * __bfloat162float(p2[i]);
    ss += y * y;
  }
  const float r = rsqrtf(cuda::warp_sum(ss) / float(D) + eps);
  if (lane == 0) rstd[row] = r;
  for (int64_t i = lane; i < D; i += 32) {
    const float y = __bfloat162float(p1[i]) - lambda * __bfloat162float(p2[i]);
    out[row * D + i] = __float2bfloat16_rn(s * __bfloat162float(w[i]) * y * r);
  }
}

// part_dw: [gridDim.x, D], part_dl: [gridDim.x].
__global__ void combine_bwd_kernel(__nv_bfloat16* da1, __nv_bfloat16* da2, float* part_dw, float* part_dl,
                                   const __nv_bfloat16* dout, const __nv_bfloat16* a1, const __nv_bfloat16* a2,
                                   const __nv_bfloat16* lam, const __nv_bfloat16* w, const float* rstd, int64_t N,
                                   int64_t H, int64_t G, int64_t D, int64_t Dl, float lambda_init) {
  __shared__ float s_lambda;
  __shared__ float s_dw[kWarps][kMaxD];
  __shared__ float s_dl[kWarps];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (warp == 0) {
    float e1, e2;
    lambda_exps(lam, Dl, e1, e2);
    if (lane == 0) s_lambda = e1 - e2 + lambda_init;
  }
  __syncthreads();
  const float lambda = s_lambda, s = 1.0f - lambda_init;
  const int64_t group = H / G;
  float dw[kCols], acc2[kCols];
  for (int j = 0; j < kCols; ++j) dw[j] = 0.f;
  float dl = 0.f;
  for (int64_t pair = blockIdx.x * int64_t(kWarps) + warp; pair < N * G; pair += int64_t(gridDim.x) * kWarps) {
    const int64_t n = pair / G, g = pair % G;
    const __nv_bfloat16* p2 = a2 + pair * D;
    for (int j = 0; j < kCols; ++j) acc2[j] = 0.f;
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const int64_t row = n * H + h;
      const float r = rstd[row];
      float yn[kCols], e[kCols];
      float dot = 0.f;
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        const int64_t i = lane + 32 * j;
        yn[j] = e[j] = 0.f;
        if (i < D) {
          const float go = __bfloat162float(dout[row * D + i]);
          yn[j] = (__bfloat162float(a1[row * D + i]) - lambda * __bfloat162float(p2[i])) * r;
          e[j] = s * __bfloat162float(w[i]) * go;
          dot += e[j] * yn[j];
          dw[j] += s * go * yn[j];
        }
      }
      dot = cuda::warp_sum(dot) / float(D);
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        const int64_t i = lane + 32 * j;
        if (i < D) {
          const float dy = r * (e[j] - yn[j] * dot);
          da1[row * D + i] = __float2bfloat16_rn(dy);
          acc2[j] -= lambda * dy;
          dl -= dy * __bfloat162float(p2[i]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const int64_t i = lane + 32 * j;
      if (i < D) da2[pair * D + i] = __float2bfloat16_rn(acc2[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < kCols; ++j) s_dw[warp][lane + 32 * j] = dw[j];
  dl = cuda::warp_sum(dl);
  if (lane == 0) s_dl[warp] = dl;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float t = 0.f;
    for (int k = 0; k < kWarps; ++k) t += s_dw[k][i];
    part_dw[int64_t(blockIdx.x) * D + i] = t;
  }
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int k = 0; k < kWarps; ++k) t += s_dl[k];
    part_dl[blockIdx.x] = t;
  }
}

// dlam rows (lq1, lk1, lq2, lk2) of length D += dlambda * (e1 lk1, e1 lq1, -e2 lk2, -e2 lq2); one warp.
__global__ void lambda_grad_kernel(float* dlam, const float* dlambda, const __nv_bfloat16* lam, int64_t D) {
  float e1, e2;
  lambda_exps(lam, D, e1, e2);
  const float g = *dlambda;
  for (int64_t i = threadIdx.x; i < D; i += 32) {
    dlam[i] += g * e1 * __bfloat162float(lam[D + i]);
    dlam[D + i] += g * e1 * __bfloat162float(lam[i]);
    dlam[2 * D + i] -= g * e2 * __bfloat162float(lam[3 * D + i]);
    dlam[3 * D + i] -= g * e2 * __bfloat162float(lam[2 * D + i]);
  }
}

}  // namespace

void CudaKernels::diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2,
                                            const Tensor& lam, const Tensor& weight, double lambda_init, float eps) {
  const char* op = "diff_attn_combine_forward";
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "rstd", rstd, DType::F32);
  cuda::check_dtype(op, "a1", a1, DType::BF16);
  cuda::check_dtype(op, "a2", a2, DType::BF16);
  cuda::check_dtype(op, "lam", lam, DType::BF16);
  cuda::check_dtype(op, "weight", weight, DType::BF16);
  const DiffCombineDims d = diff_combine_dims(op, a1, a2, lam, weight, rstd);
  check_shape(op, "out", out, a1.shape());
  if (d.N == 0) return;
  combine_fwd_kernel<<<cuda::grid_for(d.N * d.H, kWarps, op), 32 * kWarps, 0, stream_>>>(
      cuda::bf(out), cuda::f32(rstd), cuda::bf(a1), cuda::bf(a2), cuda::bf(lam), cuda::bf(weight), d.N, d.H, d.G, d.D,
      d.Dl, float(lambda_init), eps);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight,
                                             const Tensor& dout, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                             const Tensor& weight, const Tensor& rstd, double lambda_init) {
  const char* op = "diff_attn_combine_backward";
  cuda::check_dtype(op, "da1", da1, DType::BF16);
  cuda::check_dtype(op, "da2", da2, DType::BF16);
  cuda::check_dtype(op, "dlam", dlam, DType::F32);
  cuda::check_dtype(op, "dweight", dweight, DType::F32);
  cuda::check_dtype(op, "dout", dout, DType::BF16);
  cuda::check_dtype(op, "a1", a1, DType::BF16);
  cuda::check_dtype(op, "a2", a2, DType::BF16);
  cuda::check_dtype(op, "lam", lam, DType::BF16);
  cuda::check_dtype(op, "weight", weight, DType::BF16);
  cuda::check_dtype(op, "rstd", rstd, DType::F32);
  const DiffCombineDims d = diff_combine_dims(op, a1, a2, lam, weight, rstd);
  check_shape(op, "da1", da1, a1.shape());
  check_shape(op, "da2", da2, a2.shape());
  check_shape(op, "dout", dout, a1.shape());
  check_shape(op, "dlam", dlam, lam.shape());
  check_shape(op, "dweight", dweight, weight.shape());
  TEMPER_CHECK(d.D <= kMaxD, op, ": head dimension ", d.D, " exceeds the CUDA kernel's limit of ", kMaxD);
  if (d.N == 0) return;
  Tensor dlambda = alloc({1}, DType::F32);
  zero(dlambda);
  const int64_t pairs = d.N * d.G, want = (pairs + kWarps - 1) / kWarps;
  const unsigned blocks = unsigned(want < 1024 ? want : 1024);
  Tensor part_dw = alloc({int64_t(blocks), d.D}, DType::F32), part_dl = alloc({int64_t(blocks)}, DType::F32);
  combine_bwd_kernel<<<blocks, 32 * kWarps, 0, stream_>>>(
      cuda::bf(da1), cuda::bf(da2), cuda::f32(part_dw), cuda::f32(part_dl), cuda::bf(dout), cuda::bf(a1), cuda::bf(a2),
      cuda::bf(lam), cuda::bf(weight), cuda::f32(rstd), d.N, d.H, d.G, d.D, d.Dl, float(lambda_init));
  TEMPER_CUDA_CHECK_LAUNCH();
  cuda::add_column_sums(stream_, cuda::f32(dweight), cuda::f32(part_dw), blocks, d.D);
  cuda::add_column_sums(stream_, cuda::f32(dlambda), cuda::f32(part_dl), blocks, 1);
  lambda_grad_kernel<<<1, 32, 0, stream_>>>(cuda::f32(dlam), cuda::f32(dlambda), cuda::bf(lam), d.Dl);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
