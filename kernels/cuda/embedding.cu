// CUDA backend: token embedding lookup (bf16 rows) and its scatter-add
// backward into the f32 table gradient. Token ids outside [0, V) cannot raise an
// error from the device: the forward writes NaN for them (so the loss shows it)
// and the backward skips them.
// Backward without atomics, so the gradient is bitwise the same from run to
// run: the (token, position) pairs are sorted by token with a stable radix sort
// (CUB, part of the CUDA toolkit), so each token's positions form one run in
// ascending order; one block per (run start, 256 columns) sums its token's rows
// of dout (8 warps take every 8th position of the run; their sums meet in shared
// memory in warp order) and adds the total to the token's row of dwte once.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <limits>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

__global__ void embedding_fwd_kernel(__nv_bfloat16* out, const int32_t* tok, const __nv_bfloat16* wte, int64_t N,
                                     int64_t C, int64_t V) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    const int32_t t = tok[n];
    out[i] = (t >= 0 && t < V) ? wte[int64_t(t) * C + c] : __float2bfloat16_rn(__int_as_float(0x7fc00000));
  }
}

// keys[n] = tok[n] for ids in [0, V), else V (skipped); pos[n] = n.
__global__ void embedding_keys_kernel(int32_t* keys, int32_t* pos, const int32_t* tok, int64_t N, int64_t V) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N; n += int64_t(gridDim.x) * blockDim.x) {
    const int32_t t = tok[n];
    keys[n] = (t >= 0 && t < V) ? t : int32_t(V);
    pos[n] = int32_t(n);
  }
}

constexpr int kEmbWarps = 8, kEmbCols = 256;  // columns per block: 32 lanes x 8

// Block (blockIdx.x = i in the sorted order, blockIdx.y = column chunk): when i
// starts a run of token t, dwte[t, chunk] += sum over the run of dout[pos, chunk].
// VEC: C % 8 == 0 and dout 16-byte aligned (lane loads 8 contiguous columns).
template <bool VEC>
__global__ void __launch_bounds__(32 * kEmbWarps)
    embedding_bwd_runs_kernel(float* dwte, const __nv_bfloat16* dout, const int32_t* skeys, const int32_t* spos,
                              int64_t N, int64_t C, int64_t V) {
  __shared__ float part[kEmbWarps][kEmbCols];
  const int64_t i = blockIdx.x;
  const int32_t t = skeys[i];
  if (t >= V || (i > 0 && skeys[i - 1] == t)) return;  // not a run start (uniform over the block)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c0 = int64_t(blockIdx.y) * kEmbCols;
  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = 0.0f;
  for (int64_t j = i + warp; j < N && skeys[j] == t; j += kEmbWarps) {
    const __nv_bfloat16* row = dout + int64_t(spos[j]) * C;
    if (VEC) {
      const int64_t c = c0 + lane * 8;
      if (c < C) {
        float f[8];
        cuda::load8(f, row + c);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] += f[e];
      }
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const int64_t c = c0 + lane + 32 * e;
        if (c < C) acc[e] += __bfloat162float(row[c]);
      }
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) part[warp][VEC ? lane * 8 + e : lane + 32 * e] = acc[e];
  __syncthreads();
  const int64_t c = c0 + threadIdx.x;
  if (c < C) {
    float s = 0.0f;
    for (int w = 0; w < kEmbWarps; ++w) s += part[w][threadIdx.x];
    dwte[int64_t(t) * C + c] += s;
  }
}

}  // namespace

void CudaKernels::embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) {
  const char* op = "embedding_forward";
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "wte", wte, DType::BF16);
  TEMPER_CHECK(wte.ndim() == 2, op, ": 'wte' must be [V, C], got ", shape_str(wte.shape()));
  const int64_t V = wte.dim(0), C = wte.dim(1), N = tokens.numel();
  cuda::check_i32(op, "tokens", tokens, N);
  cuda::check_shape(op, "out", out, {N, C});
  if (N * C == 0) return;
  embedding_fwd_kernel<<<cuda::grid_stride_blocks(N * C, op), 256, 0, stream_>>>(cuda::bf(out), cuda::i32(tokens),
                                                                                 cuda::bf(wte), N, C, V);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) {
  const char* op = "embedding_backward";
  cuda::check_dtype(op, "dwte", dwte, DType::F32);
  cuda::check_dtype(op, "dout", dout, DType::BF16);
  TEMPER_CHECK(dwte.ndim() == 2, op, ": 'dwte' must be [V, C], got ", shape_str(dwte.shape()));
  const int64_t V = dwte.dim(0), C = dwte.dim(1), N = tokens.numel();
  cuda::check_i32(op, "tokens", tokens, N);
  cuda::check_shape(op, "dout", dout, {N, C});
  if (N * C == 0) return;
  TEMPER_CHECK(N <= std::numeric_limits<int32_t>::max() && V < std::numeric_limits<int32_t>::max(), op, ": ", N,
               " tokens or a vocabulary of ", V, " is too large for the sorted backward");
  Tensor keys = alloc({N}, DType::I32), pos = alloc({N}, DType::I32);
  Tensor skeys = alloc({N}, DType::I32), spos = alloc({N}, DType::I32);
  embedding_keys_kernel<<<cuda::grid_stride_blocks(N, op), 256, 0, stream_>>>(cuda::i32(keys), cuda::i32(pos),
                                                                              cuda::i32(tokens), N, V);
  TEMPER_CUDA_CHECK_LAUNCH();
  int end_bit = 1;  // keys lie in [0, V]
  while (end_bit < 31 && (int64_t(1) << end_bit) <= V) ++end_bit;
  size_t temp_bytes = 0;
  TEMPER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, cuda::i32(keys), cuda::i32(skeys),
                                                    cuda::i32(pos), cuda::i32(spos), int(N), 0, end_bit, stream_));
  Tensor temp = alloc({int64_t(temp_bytes) + 1}, DType::U8);
  TEMPER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw(), temp_bytes, cuda::i32(keys), cuda::i32(skeys),
                                                    cuda::i32(pos), cuda::i32(spos), int(N), 0, end_bit, stream_));
  const int64_t chunks = (C + kEmbCols - 1) / kEmbCols;
  TEMPER_CHECK(chunks <= 65535, op, ": embedding width ", C, " is too large");
  const dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>(chunks));
  const bool vec = C % 8 == 0 && reinterpret_cast<uintptr_t>(dout.raw()) % 16 == 0;
  auto kern = vec ? embedding_bwd_runs_kernel<true> : embedding_bwd_runs_kernel<false>;
  kern<<<grid, 32 * kEmbWarps, 0, stream_>>>(cuda::f32(dwte), cuda::bf(dout), cuda::i32(skeys), cuda::i32(spos), N,
                                             C, V);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
