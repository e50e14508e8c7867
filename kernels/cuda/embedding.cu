// CUDA backend: token embedding lookup (bf16 rows) and its scatter-add
// backward into the f32 table gradient (atomicAdd: repeated tokens share rows).
// Token ids outside [0, V) cannot raise an error from the device: the forward
// writes NaN for them (so the loss shows it) and the backward skips them.
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

__global__ void embedding_bwd_kernel(float* dwte, const __nv_bfloat16* dout, const int32_t* tok, int64_t N, int64_t C,
                                     int64_t V) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    const int32_t t = tok[n];
    if (t >= 0 && t < V) atomicAdd(dwte + int64_t(t) * C + c, __bfloat162float(dout[i]));
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
  embedding_bwd_kernel<<<cuda::grid_stride_blocks(N * C, op), 256, 0, stream_>>>(cuda::f32(dwte), cuda::bf(dout),
                                                                                 cuda::i32(tokens), N, C, V);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
