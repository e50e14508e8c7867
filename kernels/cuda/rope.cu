// CUDA backend: rotary position embedding, "rotate half", in place on bf16
// x[N, H, D]. One thread per (token, pair index i < D/2), looping over the
// heads; the angle pos * theta^(-2i/D) and its sine/cosine are computed in
// double (as the cpu backend does), the rotation in f32.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

__global__ void rope_kernel(__nv_bfloat16* x, const int32_t* pos, int64_t N, int64_t H, int64_t D, double theta,
                            double sign) {
  const int64_t half = D / 2;
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= N * half) return;
  const int64_t n = idx / half, i = idx % half;
  const double inv_freq = pow(theta, -2.0 * double(i) / double(D));
  double s, c;
  sincos(double(pos[n]) * inv_freq, &s, &c);
  const float cf = static_cast<float>(c), sf = static_cast<float>(sign * s);
  for (int64_t h = 0; h < H; ++h) {
    __nv_bfloat16* row = x + (n * H + h) * D;
    const float x1 = __bfloat162float(row[i]), x2 = __bfloat162float(row[i + half]);
    row[i] = __float2bfloat16_rn(x1 * cf - x2 * sf);
    row[i + half] = __float2bfloat16_rn(x2 * cf + x1 * sf);
  }
}

void rope_apply(const char* op, cudaStream_t stream, Tensor& x, const Tensor& positions, float theta, double sign) {
  cuda::check_dtype(op, "x", x, DType::BF16);
  TEMPER_CHECK(x.ndim() == 3, op, ": 'x' must be [N, H, D], got ", shape_str(x.shape()));
  const int64_t N = x.dim(0), H = x.dim(1), D = x.dim(2);
  TEMPER_CHECK(D % 2 == 0, op, ": head dimension D = ", D, " must be even for rotate-half RoPE");
  TEMPER_CHECK(theta > 0.0f, op, ": rope theta must be positive, got ", theta);
  cuda::check_i32(op, "positions", positions, N);
  if (N * H * D == 0) return;
  rope_kernel<<<cuda::grid_for(N * (D / 2), 256, op), 256, 0, stream>>>(cuda::bf(x), cuda::i32(positions), N, H, D,
                                                                        double(theta), sign);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaKernels::rope_forward(Tensor& x, const Tensor& positions, float theta) {
  rope_apply("rope_forward", stream_, x, positions, theta, +1.0);
}

void CudaKernels::rope_backward(Tensor& dx, const Tensor& positions, float theta) {
  rope_apply("rope_backward", stream_, dx, positions, theta, -1.0);
}

}  // namespace temper
