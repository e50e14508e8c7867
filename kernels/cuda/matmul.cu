// CUDA backend: the GEMM wrapper (bf16 inputs, f32 compute, bf16 or f32
// output) and the linear layer out = inp @ weight^T (+ bias) with its
// backward. Forward products of few rows (out = A B^T, the decode step's weight
// GEMMs) go through cublasLt where the fixed rule of gemm_lt.h covers them
// (by default: those with a bias, added in cublasLt's epilogue); everything
// else through cublasGemmEx, the bias then broadcast into `out` first and the
// GEMM adding onto it (beta = 1). Both add the bf16 bias to the f32
// accumulator and round out to bf16 once. dweight (f32) accumulates with
// beta = 1; dbias (f32) accumulates column sums of dout: per-block partial sums,
// then added in a fixed order (column_sums.h), so the result is bitwise the same
// from run to run.
#include <limits>

#include "kernels/cuda/column_sums.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemm_lt.h"

namespace temper {

namespace {

int to_int(int64_t v, const char* what) {
  TEMPER_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "gemm: ", what, " = ", v,
               " does not fit cuBLAS's int sizes; split the operation");
  return static_cast<int>(v);
}

__global__ void fill_zero_rows(void* C, bool is_f32, int64_t M, int64_t N, int64_t ldc) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / N, c = i % N;
    if (is_f32)
      static_cast<float*>(C)[r * ldc + c] = 0.0f;
    else
      static_cast<__nv_bfloat16*>(C)[r * ldc + c] = __float2bfloat16_rn(0.0f);
  }
}

// out[r, j] = bias[j]
__global__ void broadcast_bias(__nv_bfloat16* out, const __nv_bfloat16* bias, int64_t rows, int64_t OC) {
  const int64_t total = rows * OC;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bias[i % OC];
}

// part[blockIdx.y, j] = sum over the block's rows of dout[r, j]: blockIdx.x
// picks 32 columns, threadIdx.y and blockIdx.y split the rows; the 8 row
// strides meet in shared memory in a fixed order.
__global__ void bias_grad_part(float* part, const __nv_bfloat16* dout, int64_t rows, int64_t OC,
                               int64_t rows_per_block) {
  __shared__ float sh[8][33];
  const int64_t j = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_block, r1 = min(rows, r0 + rows_per_block);
  float acc = 0.0f;
  if (j < OC)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) acc += __bfloat162float(dout[r * OC + j]);
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < OC) {
    float s = 0.0f;
    for (int y = 0; y < 8; ++y) s += sh[y][threadIdx.x];
    part[blockIdx.y * OC + j] = s;
  }
}

// The persistent scratch that holds cublasLt's split-K partial sums (cuda_graph.cu:
// recorded graphs keep using it).
constexpr int kLtWorkspaceScratch = 12;  // (sampling.cu holds 13-15, attention_cached.cu 0-1)

namespace gemm_lt = cuda::gemm_lt;

}  // namespace

void CudaKernels::gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
                       const void* B, int64_t ldb, float beta, void* C, DType ctype, int64_t ldc) {
  TEMPER_CHECK(ctype == DType::F32 || ctype == DType::BF16, "gemm: output dtype ", dtype_name(ctype),
               " is not supported (bf16 or f32)");
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta * C; only beta 0 and 1 occur in this backend
    TEMPER_CHECK(beta == 0.0f || beta == 1.0f, "gemm: empty product with beta = ", beta);
    if (beta == 0.0f) {
      fill_zero_rows<<<cuda::grid_for(std::min<int64_t>(M * N, int64_t(1) << 24), 256, "gemm"), 256, 0, stream_>>>(
          C, ctype == DType::F32, M, N, ldc);
      TEMPER_CUDA_CHECK_LAUNCH();
    }
    return;
  }
  if (!ta && tb) {  // C = A B^T: the forward products; few rows may go through cublasLt (gemm_lt.h)
    gemm_lt::Problem p;
    if (gemm_lt::make_problem(M, N, K, ctype == DType::F32, false, A, lda, B, ldb, C, ldc, nullptr, &p))
      if (const gemm_lt::Plan* plan = gemm_lt::plan_for(p, device_, sm_count_)) {
        void* ws = plan->cand.workspace
                       ? scratch_f32(kLtWorkspaceScratch, int64_t((plan->cand.workspace + 3) / 4)).raw()
                       : nullptr;
        gemm_lt::run(plan->descs, plan->cand, A, B, C, nullptr, alpha, beta, ws, stream_);
        return;
      }
  }
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
  // operands; a row-major matrix read column-major is its transpose.
  const cudaDataType_t ct = ctype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  TEMPER_CUBLAS_CHECK(cublasGemmEx(cublas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   to_int(N, "N"), to_int(M, "M"), to_int(K, "K"), &alpha, B, CUDA_R_16BF,
                                   to_int(ldb, "ldb"), A, CUDA_R_16BF, to_int(lda, "lda"), &beta, C, ct,
                                   to_int(ldc, "ldc"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CudaKernels::matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) {
  const char* op = "matmul_forward";
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "inp", inp, DType::BF16);
  cuda::check_dtype(op, "weight", weight, DType::BF16);
  const LinearDims d = linear_dims(op, inp, weight, out, "out");
  float beta = 0.0f;
  if (bias) {
    cuda::check_dtype(op, "bias", *bias, DType::BF16);
    cuda::check_shape(op, "bias", *bias, {d.OC});
    gemm_lt::Problem p;
    if (d.C > 0 && gemm_lt::make_problem(d.rows, d.OC, d.C, false, true, inp.raw(), d.C, weight.raw(), d.C,
                                         out.raw(), d.OC, bias->raw(), &p))
      if (const gemm_lt::Plan* plan = gemm_lt::plan_for(p, device_, sm_count_)) {
        void* ws = plan->cand.workspace
                       ? scratch_f32(kLtWorkspaceScratch, int64_t((plan->cand.workspace + 3) / 4)).raw()
                       : nullptr;
        gemm_lt::run(plan->descs, plan->cand, inp.raw(), weight.raw(), out.raw(), bias->raw(), 1.0f, 0.0f, ws,
                     stream_);
        return;
      }
    if (d.rows * d.OC > 0) {
      broadcast_bias<<<cuda::grid_for(std::min<int64_t>(d.rows * d.OC, int64_t(1) << 24), 256, op), 256, 0, stream_>>>(
          cuda::bf(out), cuda::bf(*bias), d.rows, d.OC);
      TEMPER_CUDA_CHECK_LAUNCH();
    }
    beta = 1.0f;
  }
  gemm(false, true, d.rows, d.OC, d.C, 1.0f, inp.raw(), d.C, weight.raw(), d.C, beta, out.raw(), DType::BF16, d.OC);
}

void CudaKernels::matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                                  const Tensor& inp, const Tensor& weight) {
  const char* op = "matmul_backward";
  cuda::check_dtype(op, "dweight", dweight, DType::F32);
  cuda::check_dtype(op, "dout", dout, DType::BF16);
  cuda::check_dtype(op, "inp", inp, DType::BF16);
  cuda::check_dtype(op, "weight", weight, DType::BF16);
  const LinearDims d = linear_dims(op, inp, weight, dout, "dout");
  cuda::check_shape(op, "dweight", dweight, weight.shape());
  if (dinp) {
    cuda::check_dtype(op, "dinp", *dinp, DType::BF16);
    cuda::check_shape(op, "dinp", *dinp, inp.shape());
    // dinp[rows, C] (=|+=) dout[rows, OC] @ weight[OC, C]
    gemm(false, false, d.rows, d.C, d.OC, 1.0f, dout.raw(), d.OC, weight.raw(), d.C, accumulate ? 1.0f : 0.0f,
         dinp->raw(), DType::BF16, d.C);
  }
  // dweight[OC, C] += dout^T @ inp
  gemm(true, false, d.OC, d.C, d.rows, 1.0f, dout.raw(), d.OC, inp.raw(), d.C, 1.0f, dweight.raw(), DType::F32, d.C);
  if (dbias) {
    cuda::check_dtype(op, "dbias", *dbias, DType::F32);
    cuda::check_shape(op, "dbias", *dbias, {d.OC});
    if (d.rows > 0 && d.OC > 0) {
      const int64_t rows_per_block = 256;
      const int64_t yblocks = (d.rows + rows_per_block - 1) / rows_per_block;
      TEMPER_CHECK(yblocks <= 65535, op, ": ", d.rows, " rows are too many for the bias-gradient reduction");
      dim3 grid(cuda::grid_for(d.OC, 32, op), static_cast<unsigned>(yblocks));
      Tensor part = alloc({yblocks, d.OC}, DType::F32);
      bias_grad_part<<<grid, dim3(32, 8), 0, stream_>>>(cuda::f32(part), cuda::bf(dout), d.rows, d.OC,
                                                        rows_per_block);
      TEMPER_CUDA_CHECK_LAUNCH();
      cuda::add_column_sums(stream_, cuda::f32(*dbias), cuda::f32(part), yblocks, d.OC);
    }
  }
}

}  // namespace temper
