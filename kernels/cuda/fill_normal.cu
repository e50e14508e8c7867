// CUDA backend: fill_normal (kernels.h): one thread per pair of elements, the
// counter-based generator of kernels/counter_normal.h (the CPU's bits exactly).
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

template <typename T>
__global__ void fill_normal_kernel(T* out, int64_t n, uint64_t seed, uint32_t stream, double std) {
  const int64_t pairs = (n + 1) / 2;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < pairs; j += int64_t(gridDim.x) * blockDim.x) {
    double z0, z1;
    cnormal::normal_pair(seed, stream, uint64_t(j), z0, z1);
    out[2 * j] = T(__dmul_rn(std, z0));  // double -> float rounds to nearest, as on the host
    if (2 * j + 1 < n) out[2 * j + 1] = T(__dmul_rn(std, z1));
  }
}

}  // namespace

void CudaKernels::fill_normal(Tensor& t, uint64_t seed, uint32_t stream, double std) {
  const char* op = "fill_normal";
  cuda::check_on_device(op, {{"t", &t}});
  TEMPER_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, op, ": f32 or f64 tensor expected, got ",
               dtype_name(t.dtype()));
  const int64_t n = t.numel();
  if (n == 0) return;
  const unsigned grid = cuda::grid_stride_blocks((n + 1) / 2, op);
  if (t.dtype() == DType::F64)
    fill_normal_kernel<<<grid, 256, 0, stream_>>>(static_cast<double*>(t.raw()), n, seed, stream, std);
  else
    fill_normal_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(t), n, seed, stream, std);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
