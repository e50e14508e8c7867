// CUDA backend: y += x, y *= s and y = a y + b x. y and x are bf16 or f32 (y f32 with x bf16
// is allowed too, for accumulating activation-dtype values into gradients).
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

template <typename TY, typename TX>
__global__ void add_kernel(TY* y, const TX* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    cuda::st(y, i, cuda::ld(y, i) + cuda::ld(x, i));
}

template <typename T>
__global__ void scale_kernel(T* y, float s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    cuda::st(y, i, cuda::ld(y, i) * s);
}

template <typename TY, typename TX>
__global__ void axpby_kernel(TY* y, float a, const TX* x, float b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    cuda::st(y, i, a == 0.0f ? b * cuda::ld(x, i) : a * cuda::ld(y, i) + b * cuda::ld(x, i));
}

bool is_act_or_f32(DType t) { return t == DType::BF16 || t == DType::F32; }

}  // namespace

void CudaKernels::add_inplace(Tensor& y, const Tensor& x) {
  const char* op = "add_inplace";
  cuda::check_on_device(op, {{"y", &y}, {"x", &x}});
  TEMPER_CHECK(y.numel() == x.numel(), op, ": 'y' has shape ", shape_str(y.shape()), " but 'x' has ",
               shape_str(x.shape()));
  const DType dy = y.dtype(), dx = x.dtype();
  TEMPER_CHECK(is_act_or_f32(dy) && is_act_or_f32(dx) && !(dy == DType::BF16 && dx == DType::F32), op,
               ": unsupported dtypes y ", dtype_name(dy), ", x ", dtype_name(dx),
               " (the cuda backend adds bf16 += bf16, f32 += f32 and f32 += bf16)");
  const int64_t n = y.numel();
  if (n == 0) return;
  const unsigned grid = cuda::grid_stride_blocks(n, op);
  if (dy == DType::BF16)
    add_kernel<<<grid, 256, 0, stream_>>>(cuda::bf(y), cuda::bf(x), n);
  else if (dx == DType::F32)
    add_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(y), cuda::f32(x), n);
  else
    add_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(y), cuda::bf(x), n);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::scale_inplace(Tensor& y, float s) {
  const char* op = "scale_inplace";
  cuda::check_on_device(op, {{"y", &y}});
  TEMPER_CHECK(is_act_or_f32(y.dtype()), op, ": 'y' has dtype ", dtype_name(y.dtype()),
               "; the cuda backend scales bf16 or f32 tensors");
  const int64_t n = y.numel();
  if (n == 0) return;
  if (y.dtype() == DType::BF16)
    scale_kernel<<<cuda::grid_stride_blocks(n, op), 256, 0, stream_>>>(cuda::bf(y), s, n);
  else
    scale_kernel<<<cuda::grid_stride_blocks(n, op), 256, 0, stream_>>>(cuda::f32(y), s, n);
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::axpby(Tensor& y, double a, const Tensor& x, double b) {
  const char* op = "axpby";
  cuda::check_on_device(op, {{"y", &y}, {"x", &x}});
  TEMPER_CHECK(y.numel() == x.numel(), op, ": 'y' has shape ", shape_str(y.shape()), " but 'x' has ",
               shape_str(x.shape()));
  const DType dy = y.dtype(), dx = x.dtype();
  TEMPER_CHECK(is_act_or_f32(dy) && is_act_or_f32(dx), op, ": unsupported dtypes y ", dtype_name(dy), ", x ",
               dtype_name(dx), " (the cuda backend takes bf16 and f32)");
  const int64_t n = y.numel();
  if (n == 0) return;
  const unsigned grid = cuda::grid_stride_blocks(n, op);
  const float fa = float(a), fb = float(b);
  if (dy == DType::BF16 && dx == DType::BF16)
    axpby_kernel<<<grid, 256, 0, stream_>>>(cuda::bf(y), fa, cuda::bf(x), fb, n);
  else if (dy == DType::BF16)
    axpby_kernel<<<grid, 256, 0, stream_>>>(cuda::bf(y), fa, cuda::f32(x), fb, n);
  else if (dx == DType::F32)
    axpby_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(y), fa, cuda::f32(x), fb, n);
  else
    axpby_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(y), fa, cuda::bf(x), fb, n);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
