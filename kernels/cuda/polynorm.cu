// CUDA backend: fused PolyNorm on a gate|up tensor gu[N, 2F] (bf16), f32 math.
//   r_k = 1/sqrt(mean_F(x^(2k)) + eps) (k = 3, 2, 1; rstd f32 [N,3])
//   out = (w0 x^3 r3 + w1 x^2 r2 + w2 x r1 + b) * u
// One block per row (grid-stride over rows): forward reads the gate twice (the
// three statistics in one pass, then the output), backward reads gate, up and
// dout twice (the four row sums S3, S2, S1, sum dP, then dgu); the coefficient
// gradient is summed per block in registers, written as a per-block partial
// [blocks, 4] and added to dcoef in a fixed order (column_sums.h: bitwise the
// same from run to run).
//   dP = dout u, S_k = sum dP x^k r_k,  du = dout P,
//   dx = sum_k k x^(k-1) w_k r_k (dP - x^k r_k S_k / F)
#include "kernels/cuda/column_sums.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/motif_op_checks.h"

namespace temper {

namespace {

constexpr int kThreads = 256;

unsigned row_blocks(int64_t rows) { return unsigned(rows < 4096 ? rows : 4096); }

__global__ void polynorm_fwd_kernel(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* gu, const __nv_bfloat16* coef,
                                    int64_t rows, int64_t F, float eps) {
  __shared__ float scratch[32];
  const float w0 = __bfloat162float(coef[0]), w1 = __bfloat162float(coef[1]), w2 = __bfloat162float(coef[2]),
              b = __bfloat162float(coef[3]);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const __nv_bfloat16* x = gu + r * 2 * F;
    float s2 = 0.f, s4 = 0.f, s6 = 0.f;
    for (int64_t f = threadIdx.x; f < F; f += blockDim.x) {
      const float v = __bfloat162float(x[f]), v2 = v * v;
      s2 += v2;
      s4 += v2 * v2;
      s6 += v2 * v2 * v2;
    }
    s2 = cuda::block_sum(s2, scratch);
    s4 = cuda::block_sum(s4, scratch);
    s6 = cuda::block_sum(s6, scratch);
    const float r3 = rsqrtf(s6 / float(F) + eps), r2 = rsqrtf(s4 / float(F) + eps), r1 = rsqrtf(s2 / float(F) + eps);
    if (threadIdx.x == 0) {
      rstd[3 * r] = r3;
      rstd[3 * r + 1] = r2;
      rstd[3 * r + 2] = r1;
    }
    for (int64_t f = threadIdx.x; f < F; f += blockDim.x) {
      const float v = __bfloat162float(x[f]), u = __bfloat162float(x[F + f]);
      const float P = w0 * v * v * v * r3 + w1 * v * v * r2 + w2 * v * r1 + b;
      out[r * F + f] = __float2bfloat16_rn(P * u);
    }
  }
}

__global__ void polynorm_bwd_kernel(__nv_bfloat16* dgu, float* part, const __nv_bfloat16* dout,
                                    const __nv_bfloat16* gu, const __nv_bfloat16* coef, const float* rstd,
                                    int64_t rows, int64_t F) {
  __shared__ float scratch[32];
  const float w0 = __bfloat162float(coef[0]), w1 = __bfloat162float(coef[1]), w2 = __bfloat162float(coef[2]),
              b = __bfloat162float(coef[3]);
  float acc3 = 0.f, acc2 = 0.f, acc1 = 0.f, accb = 0.f;  // thread 0's block totals
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const __nv_bfloat16* x = gu + r * 2 * F;
    const __nv_bfloat16* g = dout + r * F;
    const float r3 = rstd[3 * r], r2 = rstd[3 * r + 1], r1 = rstd[3 * r + 2];
    float S3 = 0.f, S2 = 0.f, S1 = 0.f, Sb = 0.f;
    for (int64_t f = threadIdx.x; f < F; f += blockDim.x) {
      const float v = __bfloat162float(x[f]), dP = __bfloat162float(g[f]) * __bfloat162float(x[F + f]);
      S3 += dP * v * v * v * r3;
      S2 += dP * v * v * r2;
      S1 += dP * v * r1;
      Sb += dP;
    }
    S3 = cuda::block_sum(S3, scratch);
    S2 = cuda::block_sum(S2, scratch);
    S1 = cuda::block_sum(S1, scratch);
    Sb = cuda::block_sum(Sb, scratch);
    acc3 += S3;
    acc2 += S2;
    acc1 += S1;
    accb += Sb;
    const float invF = 1.0f / float(F);
    __nv_bfloat16* d = dgu + r * 2 * F;
    for (int64_t f = threadIdx.x; f < F; f += blockDim.x) {
      const float v = __bfloat162float(x[f]), u = __bfloat162float(x[F + f]), go = __bfloat162float(g[f]);
      const float dP = go * u;
      const float n3 = v * v * v * r3, n2 = v * v * r2, n1 = v * r1;
      const float P = w0 * n3 + w1 * n2 + w2 * n1 + b;
      const float dp3 = w0 * r3 * (dP - n3 * S3 * invF);
      const float dp2 = w1 * r2 * (dP - n2 * S2 * invF);
      const float dp1 = w2 * r1 * (dP - n1 * S1 * invF);
      d[f] = __float2bfloat16_rn(dp1 + 2.f * v * dp2 + 3.f * v * v * dp3);
      d[F + f] = __float2bfloat16_rn(go * P);
    }
  }
  if (threadIdx.x == 0) {
    float* p = part + 4 * int64_t(blockIdx.x);
    p[0] = acc3;
    p[1] = acc2;
    p[2] = acc1;
    p[3] = accb;
  }
}

}  // namespace

void CudaKernels::polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) {
  const char* op = "polynorm_forward";
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "rstd", rstd, DType::F32);
  cuda::check_dtype(op, "gu", gu, DType::BF16);
  cuda::check_dtype(op, "coef", coef, DType::BF16);
  const PolyNormDims d = polynorm_dims(op, gu, out, "out", coef, &rstd);
  if (d.rows == 0) return;
  polynorm_fwd_kernel<<<row_blocks(d.rows), kThreads, 0, stream_>>>(cuda::bf(out), cuda::f32(rstd), cuda::bf(gu),
                                                                     cuda::bf(coef), d.rows, d.F, eps);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu,
                                    const Tensor& coef, const Tensor& rstd) {
  const char* op = "polynorm_backward";
  cuda::check_dtype(op, "dgu", dgu, DType::BF16);
  cuda::check_dtype(op, "dcoef", dcoef, DType::F32);
  cuda::check_dtype(op, "dout", dout, DType::BF16);
  cuda::check_dtype(op, "gu", gu, DType::BF16);
  cuda::check_dtype(op, "coef", coef, DType::BF16);
  cuda::check_dtype(op, "rstd", rstd, DType::F32);
  const PolyNormDims d = polynorm_dims(op, gu, dout, "dout", coef, &rstd);
  check_shape(op, "dgu", dgu, gu.shape());
  check_shape(op, "dcoef", dcoef, {4});
  if (d.rows == 0) return;
  const unsigned blocks = row_blocks(d.rows);
  Tensor part = alloc({int64_t(blocks), 4}, DType::F32);
  polynorm_bwd_kernel<<<blocks, kThreads, 0, stream_>>>(cuda::bf(dgu), cuda::f32(part), cuda::bf(dout), cuda::bf(gu),
                                                        cuda::bf(coef), cuda::f32(rstd), d.rows, d.F);
  TEMPER_CUDA_CHECK_LAUNCH();
  cuda::add_column_sums(stream_, cuda::f32(dcoef), cuda::f32(part), blocks, 4);
}

}  // namespace temper
