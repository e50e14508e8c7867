// CUDA backend: copy_heads, the head-block copy of the sequence-parallel layouts
// (parallel/ulysses). A plain copy is one strided cudaMemcpy2DAsync (any dtype);
// the accumulating form adds in f32 (bf16 += bf16, f32 += f32).
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

// dst[t, i] += src[t, i] over rows t of `width` elements, row strides ds / ss (elements).
template <typename T>
__global__ void add_rows_kernel(T* dst, int64_t ds, const T* src, int64_t ss, int64_t width, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / width, c = i % width;
    cuda::st(dst, t * ds + c, cuda::ld(dst, t * ds + c) + cuda::ld(src, t * ss + c));
  }
}

}  // namespace

void CudaKernels::copy_heads(Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head, int64_t count,
                             bool accumulate) {
  const char* op = "copy_heads";
  cuda::check_on_device(op, {{"dst", &dst}, {"src", &src}});
  check_copy_heads(dst, dst_head, src, src_head, count);
  const int64_t N = dst.dim(0), Hd = dst.dim(1), Hs = src.dim(1), D = dst.dim(2);
  if (N == 0 || count == 0 || D == 0) return;
  const size_t es = dtype_size(dst.dtype());
  char* d = static_cast<char*>(dst.raw()) + size_t(dst_head * D) * es;
  const char* s = static_cast<const char*>(src.raw()) + size_t(src_head * D) * es;
  if (!accumulate) {
    TEMPER_CUDA_CHECK(cudaMemcpy2DAsync(d, size_t(Hd * D) * es, s, size_t(Hs * D) * es, size_t(count * D) * es,
                                        size_t(N), cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  const DType dt = dst.dtype();
  TEMPER_CHECK(dt == DType::BF16 || dt == DType::F32, op, ": accumulate needs bf16 or f32, got ", dtype_name(dt));
  const int64_t n = N * count * D;
  const unsigned grid = cuda::grid_stride_blocks(n, op);
  if (dt == DType::BF16)
    add_rows_kernel<<<grid, 256, 0, stream_>>>(reinterpret_cast<__nv_bfloat16*>(d), Hd * D,
                                                reinterpret_cast<const __nv_bfloat16*>(s), Hs * D, count * D, n);
  else
    add_rows_kernel<<<grid, 256, 0, stream_>>>(reinterpret_cast<float*>(d), Hd * D,
                                                reinterpret_cast<const float*>(s), Hs * D, count * D, n);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
