// CUDA backend: RMSNorm over the last dimension, one warp per row, f32 math.
//   y = x * r * w,  r = 1/sqrt(mean(x^2) + eps)            (rstd f32)
//   dx = r * w * g - x * r^3 / C * sum_j w_j g_j x_j         (bf16, = or +=)
//   dw += sum_rows g * x * r                                  (f32)
// The backward is one kernel when a row of C floats per warp fits in shared
// memory: each warp walks rows (16-byte loads when C % 8 == 0), writes dx and
// adds its dw terms into its own f32 row in shared memory (each lane owns fixed
// columns, so no atomics); the block sums its warps' rows in warp order into a
// partial row part[block, C]. Otherwise two kernels (dx per row; dw partials by
// column blocks). Either way the partials are added to dw in a fixed order
// (column_sums.h): the gradient is bitwise the same from run to run.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/column_sums.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

constexpr int kWarps = 8;  // rows per block in the row kernels

__global__ void rmsnorm_fwd_kernel(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* x, const __nv_bfloat16* w,
                                   int64_t rows, int64_t C, float eps) {
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const __nv_bfloat16* xr = x + row * C;
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const float v = __bfloat162float(xr[c]);
    ss += v * v;
  }
  ss = cuda::warp_sum(ss);
  const float s = 1.0f / sqrtf(ss / float(C) + eps);
  if (lane == 0) rstd[row] = s;
  for (int64_t c = lane; c < C; c += 32)
    out[row * C + c] = __float2bfloat16_rn(__bfloat162float(xr[c]) * s * __bfloat162float(w[c]));
}

// y = bf16(y + x) (as add_inplace), then the rmsnorm_fwd_kernel row on the new y.
__global__ void add_rmsnorm_fwd_kernel(__nv_bfloat16* y, const __nv_bfloat16* x, __nv_bfloat16* out, float* rstd,
                                       const __nv_bfloat16* w, int64_t rows, int64_t C, float eps) {
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  __nv_bfloat16* yr = y + row * C;
  const __nv_bfloat16* xr = x + row * C;
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const __nv_bfloat16 s = __float2bfloat16_rn(__bfloat162float(yr[c]) + __bfloat162float(xr[c]));
    yr[c] = s;
    const float v = __bfloat162float(s);
    ss += v * v;
  }
  ss = cuda::warp_sum(ss);
  const float s = 1.0f / sqrtf(ss / float(C) + eps);
  if (lane == 0) rstd[row] = s;
  for (int64_t c = lane; c < C; c += 32)
    out[row * C + c] = __float2bfloat16_rn(__bfloat162float(yr[c]) * s * __bfloat162float(w[c]));
}

// The same with 16-byte accesses and the row kept in registers: VPL vectors of 8
// per lane (C == 256 VPL), two warps (rows) per block for more blocks at small N.
template <int VPL>
__global__ void __launch_bounds__(64) add_rmsnorm_vec_kernel(__nv_bfloat16* y, const __nv_bfloat16* x,
                                                             __nv_bfloat16* out, float* rstd, const __nv_bfloat16* w,
                                                             int64_t rows, int64_t C, float eps) {
  const int64_t row = blockIdx.x * int64_t(2) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  __nv_bfloat16* yr = y + row * C;
  const __nv_bfloat16* xr = x + row * C;
  float v[VPL][8];
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < VPL; ++k) {
    const int64_t c = int64_t(k * 32 + lane) * 8;
    float a[8], b[8];
    cuda::load8(a, yr + c);
    cuda::load8(b, xr + c);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      v[k][e] = __bfloat162float(__float2bfloat16_rn(a[e] + b[e]));
      ss += v[k][e] * v[k][e];
    }
    cuda::store8(yr + c, v[k]);
  }
  ss = cuda::warp_sum(ss);
  const float s = 1.0f / sqrtf(ss / float(C) + eps);
  if (lane == 0) rstd[row] = s;
#pragma unroll
  for (int k = 0; k < VPL; ++k) {
    const int64_t c = int64_t(k * 32 + lane) * 8;
    float wv[8], o[8];
    cuda::load8(wv, w + c);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = v[k][e] * s * wv[e];
    cuda::store8(out + row * C + c, o);
  }
}

__global__ void rmsnorm_bwd_input_kernel(__nv_bfloat16* dx, bool accumulate, const __nv_bfloat16* g,
                                         const __nv_bfloat16* x, const __nv_bfloat16* w, const float* rstd,
                                         int64_t rows, int64_t C) {
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int64_t base = row * C;
  float dot = 0.0f;
  for (int64_t c = lane; c < C; c += 32)
    dot += __bfloat162float(w[c]) * __bfloat162float(g[base + c]) * __bfloat162float(x[base + c]);
  dot = cuda::warp_sum(dot);
  const float s = rstd[row];
  const float k = s * s * s * dot / float(C);
  for (int64_t c = lane; c < C; c += 32) {
    float v = s * __bfloat162float(w[c]) * __bfloat162float(g[base + c]) - k * __bfloat162float(x[base + c]);
    if (accumulate) v += __bfloat162float(dx[base + c]);
    dx[base + c] = __float2bfloat16_rn(v);
  }
}

// part[blockIdx.y, c] = sum over the block's rows of g * x * rstd.
__global__ void rmsnorm_bwd_weight_kernel(float* part, const __nv_bfloat16* g, const __nv_bfloat16* x,
                                          const float* rstd, int64_t rows, int64_t C, int64_t rows_per_block) {
  __shared__ float sh[8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_block, r1 = min(rows, r0 + rows_per_block);
  float acc = 0.0f;
  if (c < C)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8)
      acc += __bfloat162float(g[r * C + c]) * __bfloat162float(x[r * C + c]) * rstd[r];
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float s = 0.0f;
    for (int y = 0; y < 8; ++y) s += sh[y][threadIdx.x];
    part[blockIdx.y * C + c] = s;
  }
}

// VEC: C % 8 == 0 and every row 16-byte aligned. Shared memory: one row of C
// floats per warp. part: [gridDim.x, C].
template <bool VEC>
__global__ void rmsnorm_bwd_fused_kernel(__nv_bfloat16* dx, bool accumulate, float* part, const __nv_bfloat16* g,
                                         const __nv_bfloat16* x, const __nv_bfloat16* w, const float* rstd,
                                         int64_t rows, int C) {
  extern __shared__ float sdw[];
  const int lane = threadIdx.x & 31, nw = blockDim.x >> 5, warp = threadIdx.x >> 5;
  float* mine = sdw + int64_t(warp) * C;
  for (int c = threadIdx.x; c < nw * C; c += blockDim.x) sdw[c] = 0.0f;
  __syncthreads();
  for (int64_t row = blockIdx.x * int64_t(nw) + warp; row < rows; row += int64_t(gridDim.x) * nw) {
    const int64_t base = row * C;
    const float s = rstd[row];
    float dot = 0.0f;
    if (VEC) {
      for (int c = lane * 8; c < C; c += 256) {
        float wf[8], gf[8], xf[8];
        cuda::load8(wf, w + c);
        cuda::load8(gf, g + base + c);
        cuda::load8(xf, x + base + c);
#pragma unroll
        for (int j = 0; j < 8; ++j) dot += wf[j] * gf[j] * xf[j];
      }
    } else {
      for (int c = lane; c < C; c += 32)
        dot += __bfloat162float(w[c]) * __bfloat162float(g[base + c]) * __bfloat162float(x[base + c]);
    }
    dot = cuda::warp_sum(dot);
    const float k = s * s * s * dot / float(C);
    if (VEC) {
      for (int c = lane * 8; c < C; c += 256) {
        float wf[8], gf[8], xf[8], o[8];
        cuda::load8(wf, w + c);
        cuda::load8(gf, g + base + c);
        cuda::load8(xf, x + base + c);
        if (accumulate) cuda::load8(o, dx + base + c);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float v = s * wf[j] * gf[j] - k * xf[j];
          o[j] = accumulate ? o[j] + v : v;
          mine[c + j] += gf[j] * xf[j] * s;  // columns c..c+7 belong to this lane
        }
        cuda::store8(dx + base + c, o);
      }
    } else {
      for (int c = lane; c < C; c += 32) {
        const float gv = __bfloat162float(g[base + c]), xv = __bfloat162float(x[base + c]);
        float v = s * __bfloat162float(w[c]) * gv - k * xv;
        if (accumulate) v += __bfloat162float(dx[base + c]);
        dx[base + c] = __float2bfloat16_rn(v);
        mine[c] += gv * xv * s;
      }
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float t = 0.0f;
    for (int k = 0; k < nw; ++k) t += sdw[int64_t(k) * C + c];
    part[int64_t(blockIdx.x) * C + c] = t;
  }
}

int64_t norm_width(const char* op, const Tensor& inp, const Tensor& weight) {
  TEMPER_CHECK(weight.ndim() == 1, op, ": 'weight' must be 1-D [C], got ", shape_str(weight.shape()));
  const int64_t C = weight.dim(0);
  TEMPER_CHECK(C > 0, op, ": empty normalised dimension");
  TEMPER_CHECK(inp.ndim() >= 1 && inp.dim(-1) == C, op, ": 'inp' has shape ", shape_str(inp.shape()),
               " but 'weight' has ", shape_str(weight.shape()), " (the last dimension must match)");
  return C;
}

}  // namespace

void CudaKernels::rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) {
  const char* op = "rmsnorm_forward";
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "rstd", rstd, DType::F32);
  cuda::check_dtype(op, "inp", inp, DType::BF16);
  cuda::check_dtype(op, "weight", weight, DType::BF16);
  const int64_t C = norm_width(op, inp, weight);
  const int64_t rows = inp.numel() / C;
  cuda::check_shape(op, "out", out, inp.shape());
  TEMPER_CHECK(rstd.numel() == rows, op, ": 'rstd' has ", rstd.numel(), " elements, expected ", rows,
               " (one per row of 'inp' ", shape_str(inp.shape()), ")");
  if (rows == 0) return;
  rmsnorm_fwd_kernel<<<cuda::grid_for(rows, kWarps, op), 32 * kWarps, 0, stream_>>>(
      cuda::bf(out), cuda::f32(rstd), cuda::bf(inp), cuda::bf(weight), rows, C, eps);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::add_rmsnorm_forward(Tensor& y, const Tensor& x, Tensor& out, Tensor& rstd, const Tensor& weight,
                                      float eps) {
  const char* op = "add_rmsnorm_forward";
  if (y.dtype() != DType::BF16 || x.dtype() != DType::BF16) {  // other dtypes: the two calls
    Kernels::add_rmsnorm_forward(y, x, out, rstd, weight, eps);
    return;
  }
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "rstd", rstd, DType::F32);
  cuda::check_dtype(op, "weight", weight, DType::BF16);
  const int64_t C = norm_width(op, y, weight);
  const int64_t rows = y.numel() / C;
  cuda::check_shape(op, "x", x, y.shape());
  cuda::check_shape(op, "out", out, y.shape());
  TEMPER_CHECK(rstd.numel() == rows, op, ": 'rstd' has ", rstd.numel(), " elements, expected ", rows,
               " (one per row of 'y' ", shape_str(y.shape()), ")");
  if (rows == 0) return;
  auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0; };
  const int vpl = C % 256 == 0 ? int(C / 256) : 0;
  if (vpl >= 1 && vpl <= 8 && aligned(y) && aligned(x) && aligned(out) && aligned(weight)) {
    const unsigned grid = cuda::grid_for(rows, 2, op);
    auto launch = [&](auto kernel) {
      kernel<<<grid, 64, 0, stream_>>>(cuda::bf(y), cuda::bf(x), cuda::bf(out), cuda::f32(rstd), cuda::bf(weight),
                                       rows, C, eps);
    };
    switch (vpl) {
      case 1: launch(add_rmsnorm_vec_kernel<1>); break;
      case 2: launch(add_rmsnorm_vec_kernel<2>); break;
      case 3: launch(add_rmsnorm_vec_kernel<3>); break;
      case 4: launch(add_rmsnorm_vec_kernel<4>); break;
      case 5: launch(add_rmsnorm_vec_kernel<5>); break;
      case 6: launch(add_rmsnorm_vec_kernel<6>); break;
      case 7: launch(add_rmsnorm_vec_kernel<7>); break;
      default: launch(add_rmsnorm_vec_kernel<8>); break;
    }
    TEMPER_CUDA_CHECK_LAUNCH();
    return;
  }
  add_rmsnorm_fwd_kernel<<<cuda::grid_for(rows, kWarps, op), 32 * kWarps, 0, stream_>>>(
      cuda::bf(y), cuda::bf(x), cuda::bf(out), cuda::f32(rstd), cuda::bf(weight), rows, C, eps);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout,
                                   const Tensor& inp, const Tensor& weight, const Tensor& rstd) {
  const char* op = "rmsnorm_backward";
  cuda::check_dtype(op, "dinp", dinp, DType::BF16);
  cuda::check_dtype(op, "dweight", dweight, DType::F32);
  cuda::check_dtype(op, "dout", dout, DType::BF16);
  cuda::check_dtype(op, "inp", inp, DType::BF16);
  cuda::check_dtype(op, "weight", weight, DType::BF16);
  cuda::check_dtype(op, "rstd", rstd, DType::F32);
  const int64_t C = norm_width(op, inp, weight);
  const int64_t rows = inp.numel() / C;
  cuda::check_shape(op, "dinp", dinp, inp.shape());
  cuda::check_shape(op, "dout", dout, inp.shape());
  cuda::check_shape(op, "dweight", dweight, weight.shape());
  TEMPER_CHECK(rstd.numel() == rows, op, ": 'rstd' has ", rstd.numel(), " elements, expected ", rows);
  if (rows == 0) return;
  // Warps per block of the fused kernel: the most of 8, 4, 2, 1 whose rows of C
  // floats fit in 48 KiB of shared memory; the grid keeps about 16 warps per SM.
  int nw = kWarps;
  while (nw > 1 && size_t(nw) * size_t(C) * sizeof(float) > 48 * 1024) nw /= 2;
  const size_t smem = size_t(nw) * size_t(C) * sizeof(float);
  if (smem <= 48 * 1024) {
    const bool vec = C % 8 == 0 && reinterpret_cast<uintptr_t>(dinp.raw()) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(dout.raw()) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(inp.raw()) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(weight.raw()) % 16 == 0;
    const int64_t want = (rows + nw - 1) / nw;
    const int64_t blocks = std::min<int64_t>(want, (16 / nw) * int64_t(sm_count_));
    Tensor part = alloc({blocks, C}, DType::F32);
    auto kern = vec ? rmsnorm_bwd_fused_kernel<true> : rmsnorm_bwd_fused_kernel<false>;
    kern<<<unsigned(blocks), 32 * nw, smem, stream_>>>(cuda::bf(dinp), accumulate, cuda::f32(part), cuda::bf(dout),
                                                       cuda::bf(inp), cuda::bf(weight), cuda::f32(rstd), rows, int(C));
    TEMPER_CUDA_CHECK_LAUNCH();
    cuda::add_column_sums(stream_, cuda::f32(dweight), cuda::f32(part), blocks, C);
    return;
  }
  rmsnorm_bwd_input_kernel<<<cuda::grid_for(rows, kWarps, op), 32 * kWarps, 0, stream_>>>(
      cuda::bf(dinp), accumulate, cuda::bf(dout), cuda::bf(inp), cuda::bf(weight), cuda::f32(rstd), rows, C);
  TEMPER_CUDA_CHECK_LAUNCH();
  const int64_t rows_per_block = 256;
  const int64_t yblocks = (rows + rows_per_block - 1) / rows_per_block;
  TEMPER_CHECK(yblocks <= 65535, op, ": ", rows, " rows are too many for the weight-gradient reduction");
  dim3 grid(cuda::grid_for(C, 32, op), static_cast<unsigned>(yblocks));
  Tensor part = alloc({yblocks, C}, DType::F32);
  rmsnorm_bwd_weight_kernel<<<grid, dim3(32, 8), 0, stream_>>>(cuda::f32(part), cuda::bf(dout), cuda::bf(inp),
                                                               cuda::f32(rstd), rows, C, rows_per_block);
  TEMPER_CUDA_CHECK_LAUNCH();
  cuda::add_column_sums(stream_, cuda::f32(dweight), cuda::f32(part), yblocks, C);
}

}  // namespace temper
