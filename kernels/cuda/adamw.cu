// CUDA backend: the AdamW update on f32 param/grad/m/v (bias corrections
// computed on the host in double), and the sum of squares for gradient-norm
// clipping: per-thread double accumulators, per-block partial sums in double,
// summed on the host.
//   g' = grad_scale * g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + wd * p)
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

__device__ __forceinline__ float adamw_one(float& w, float g, float& m, float& v, float lr, float b1, float b2,
                                           float eps, float wd, float gs, float bc1, float bc2) {
  const float gi = gs * g;
  m = b1 * m + (1.0f - b1) * gi;
  v = b2 * v + (1.0f - b2) * gi * gi;
  w -= lr * ((m / bc1) / (sqrtf(v / bc2) + eps) + wd * w);
  return w;
}

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                             float eps, float wd, float gs, float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    adamw_one(w[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, gs, bc1, bc2);
}

// The same update on float4 vectors (n4 = n / 4; pointers 16-byte aligned): the
// optimizer is memory-bound, and 16-byte accesses are what reach the bandwidth.
__global__ void adamw_kernel_vec4(float4* w, const float4* g, float4* m, float4* v, int64_t n4, float lr, float b1,
                                  float b2, float eps, float wd, float gs, float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    float4 wi = w[i], mi = m[i], vi = v[i];
    const float4 gi = g[i];
    adamw_one(wi.x, gi.x, mi.x, vi.x, lr, b1, b2, eps, wd, gs, bc1, bc2);
    adamw_one(wi.y, gi.y, mi.y, vi.y, lr, b1, b2, eps, wd, gs, bc1, bc2);
    adamw_one(wi.z, gi.z, mi.z, vi.z, lr, b1, b2, eps, wd, gs, bc1, bc2);
    adamw_one(wi.w, gi.w, mi.w, vi.w, lr, b1, b2, eps, wd, gs, bc1, bc2);
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

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
  if (n % 4 == 0 && aligned16(param.raw()) && aligned16(grad.raw()) && aligned16(m.raw()) && aligned16(v.raw())) {
    const int64_t n4 = n / 4;
    const unsigned grid = cuda::grid_for(std::min<int64_t>(n4, int64_t(1) << 22), 256, op);
    adamw_kernel_vec4<<<grid, 256, 0, stream_>>>(
        static_cast<float4*>(param.raw()), static_cast<const float4*>(grad.raw()), static_cast<float4*>(m.raw()),
        static_cast<float4*>(v.raw()), n4, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_scale, float(bc1),
        float(bc2));
  } else {
    const unsigned grid = cuda::grid_for(std::min<int64_t>(n, int64_t(1) << 24), 256, op);
    adamw_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(param), cuda::f32(grad), cuda::f32(m), cuda::f32(v), n, p.lr,
                                            p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_scale, float(bc1),
                                            float(bc2));
  }
  TEMPER_CUDA_CHECK_LAUNCH();
}

double CudaKernels::sum_squares(const Tensor& x) { return sum_squares_many({&x}); }

// All tensors in one host round trip: each tensor's blocks write their partial
// sums into its own slice of one buffer, which is copied back once and added on
// the host in a fixed order (deterministic, like the single-tensor version).
double CudaKernels::sum_squares_many(const std::vector<const Tensor*>& xs) {
  const char* op = "sum_squares_many";
  const int threads = 256;
  std::vector<int> nblocks(xs.size());
  int64_t total_blocks = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = *xs[i];
    cuda::check_on_device(op, {{"x", &x}});
    TEMPER_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16, op, ": tensor ", i, " of dtype ",
                 dtype_name(x.dtype()), "; the cuda backend expects f32 or bf16");
    nblocks[i] = static_cast<int>(std::min<int64_t>((x.numel() + threads - 1) / threads, 256));
    total_blocks += nblocks[i];
  }
  if (total_blocks == 0) return 0.0;
  Tensor partial = alloc({total_blocks}, DType::F64);
  double* base = static_cast<double*>(partial.raw());
  int64_t off = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = *xs[i];
    if (nblocks[i] == 0) continue;
    if (x.dtype() == DType::F32)
      sum_squares_kernel<<<nblocks[i], threads, 0, stream_>>>(base + off, cuda::f32(x), x.numel());
    else
      sum_squares_kernel<<<nblocks[i], threads, 0, stream_>>>(base + off, cuda::bf(x), x.numel());
    TEMPER_CUDA_CHECK_LAUNCH();
    off += nblocks[i];
  }
  std::vector<double> host(total_blocks);
  TEMPER_CUDA_CHECK(
      cudaMemcpyAsync(host.data(), base, total_blocks * sizeof(double), cudaMemcpyDeviceToHost, stream_));
  synchronize();
  double acc = 0.0;
  for (double d : host) acc += d;
  return acc;
}

}  // namespace temper
