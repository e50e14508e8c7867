// CUDA backend: the AdamW update on f32 param/grad/m/v (bias corrections
// computed on the host in double), and the sum of squares for gradient-norm
// clipping: per-thread double accumulators, per-block partial sums in double,
// summed on the host.
//   g' = grad_scale * g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + wd * p)
#include <cmath>
#include <vector>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                             float eps, float wd, float gs, float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = gs * g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float upd = (mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * w[i];
    w[i] -= lr * upd;
  }
}

template <typename T>
__global__ void sum_squares_kernel(double* partial, const T* x, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double f = cuda::ld(x, i);
    acc += f * f;
  }
  acc = cuda::block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

}  // namespace

void CudaKernels::adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) {
  const char* op = "adamw_step";
  cuda::check_dtype(op, "param", param, DType::F32);
  cuda::check_dtype(op, "grad", grad, DType::F32);
  cuda::check_dtype(op, "m", m, DType::F32);
  cuda::check_dtype(op, "v", v, DType::F32);
  cuda::check_shape(op, "grad", grad, param.shape());
  cuda::check_shape(op, "m", m, param.shape());
  cuda::check_shape(op, "v", v, param.shape());
  TEMPER_CHECK(p.step >= 1, op, ": step must be >= 1 (1-based, for bias correction), got ", p.step);
  const double bc1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double bc2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  TEMPER_CHECK(bc1 > 0.0 && bc2 > 0.0, op, ": beta1 = ", p.beta1, " and beta2 = ", p.beta2,
               " must lie in [0, 1) for bias correction");
  const int64_t n = param.numel();
  if (n == 0) return;
  const unsigned grid = cuda::grid_for(std::min<int64_t>(n, int64_t(1) << 24), 256, op);
  adamw_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(param), cuda::f32(grad), cuda::f32(m), cuda::f32(v), n, p.lr,
                                          p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_scale, float(bc1),
                                          float(bc2));
  TEMPER_CUDA_CHECK_LAUNCH();
}

double CudaKernels::sum_squares(const Tensor& x) {
  const char* op = "sum_squares";
  cuda::check_on_device(op, {{"x", &x}});
  TEMPER_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16, op, ": tensor of dtype ", dtype_name(x.dtype()),
               " (shape ", shape_str(x.shape()), "); the cuda backend expects f32 or bf16");
  const int64_t n = x.numel();
  if (n == 0) return 0.0;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 1024));
  Tensor partial = alloc({blocks}, DType::F64);
  if (x.dtype() == DType::F32)
    sum_squares_kernel<<<blocks, threads, 0, stream_>>>(static_cast<double*>(partial.raw()), cuda::f32(x), n);
  else
    sum_squares_kernel<<<blocks, threads, 0, stream_>>>(static_cast<double*>(partial.raw()), cuda::bf(x), n);
  TEMPER_CUDA_CHECK_LAUNCH();
  std::vector<double> host(blocks);
  TEMPER_CUDA_CHECK(
      cudaMemcpyAsync(host.data(), partial.raw(), blocks * sizeof(double), cudaMemcpyDeviceToHost, stream_));
  synchronize();
  double acc = 0.0;
  for (double d : host) acc += d;
  return acc;
}

}  // namespace temper
