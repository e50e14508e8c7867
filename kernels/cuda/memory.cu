// CUDA backend: construction (device, stream, cuBLAS, the caching allocator
// registered for Device::CUDA), make_cuda_kernels(), alloc/zero and copies
// between any pair of devices with f32/f64/bf16 conversion. Conversions of
// device data run on the device; host data is staged through a device buffer.
#include <cstring>

#include "core/bf16.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

std::unique_ptr<Kernels> make_cuda_kernels(int device_index) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    fail("backend 'cuda' requested, but no usable CUDA device was found (cudaGetDeviceCount: ", cudaGetErrorString(err),
         "); check the driver and CUDA_VISIBLE_DEVICES, or use backend = cpu");
  }
  TEMPER_CHECK(count > 0,
               "backend 'cuda' requested, but no CUDA device is visible (check CUDA_VISIBLE_DEVICES "
               "or use backend = cpu)");
  TEMPER_CHECK(device_index >= 0, "cuda device index ", device_index, " is negative");
  // More ranks on a node than devices share them round-robin (parallel.device_comm = mpi
  // stages collectives through host memory; NCCL needs a device per rank and says so).
  return std::make_unique<CudaKernels>(device_index % count);
}

CudaKernels::CudaKernels(int device_index) : device_(device_index) {
  TEMPER_CUDA_CHECK(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  TEMPER_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  TEMPER_CHECK(prop.major >= 8, "cuda device ", device_, " (", prop.name, ") has compute capability ", prop.major, ".",
               prop.minor, "; the cuda backend needs bf16 support (8.0 or newer; built for 9.0a)");
  sm_count_ = prop.multiProcessorCount;
  TEMPER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TEMPER_CUBLAS_CHECK(cublasCreate(&cublas_));
  TEMPER_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  pool_ = std::make_shared<cuda::CachingAllocator>(device_);
  std::shared_ptr<cuda::CachingAllocator> pool = pool_;
  register_allocator(Device::CUDA, [pool](size_t bytes) { return pool->allocate(bytes); });
}

CudaKernels::~CudaKernels() {
  // Errors are ignored here: a destructor must not throw.
  if (stream_) (void)cudaStreamSynchronize(stream_);
  for (cudaGraphExec_t g : graphs_)
    if (g) (void)cudaGraphExecDestroy(g);
  if (cublas_) (void)cublasDestroy(cublas_);
  if (stream_) (void)cudaStreamDestroy(stream_);
}

Tensor CudaKernels::alloc(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype, Device::CUDA); }

Tensor CudaKernels::alloc_host(const Shape& shape, DType dtype) {
  const size_t bytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  void* p = nullptr;
  if (bytes > 0 && cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) {
    (void)cudaGetLastError();  // page-locked memory exhausted: pageable memory works, only slower
    return Tensor::empty(shape, dtype, Device::CPU);
  }
  std::shared_ptr<void> storage(p, [](void* q) {
    if (q) (void)cudaFreeHost(q);
  });
  return Tensor::adopt(std::move(storage), shape, dtype, Device::CPU);
}

void CudaKernels::zero(Tensor& t) {
  cuda::check_on_device("zero", {{"t", &t}});
  if (t.nbytes() == 0) return;
  TEMPER_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), stream_));
}

void CudaKernels::synchronize() { TEMPER_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

namespace {

bool is_convertible(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::BF16; }

__device__ __forceinline__ double load_any(const void* p, int kind, int64_t i) {
  if (kind == 0) return static_cast<const float*>(p)[i];
  if (kind == 1) return static_cast<const double*>(p)[i];
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

// f64 -> bf16 rounds to f32 first, as the cpu backend does.
__device__ __forceinline__ void store_any(void* p, int kind, int64_t i, double x) {
  if (kind == 0)
    static_cast<float*>(p)[i] = static_cast<float>(x);
  else if (kind == 1)
    static_cast<double*>(p)[i] = x;
  else
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(static_cast<float>(x));
}

int kind_of(DType t) { return t == DType::F32 ? 0 : t == DType::F64 ? 1 : 2; }

__global__ void convert_kernel(void* dst, int dkind, const void* src, int skind, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_any(dst, dkind, i, load_any(src, skind, i));
}

// f32 -> bf16 and bf16 -> f32, 4 elements per thread (the compute-copy refresh
// after every optimizer step goes through here).
__global__ void f32_to_bf16_vec4(__nv_bfloat162* dst, const float4* src, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    const float4 x = src[i];
    dst[2 * i] = __floats2bfloat162_rn(x.x, x.y);
    dst[2 * i + 1] = __floats2bfloat162_rn(x.z, x.w);
  }
}

__global__ void bf16_to_f32_vec4(float4* dst, const __nv_bfloat162* src, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    const float2 a = __bfloat1622float2(src[2 * i]), b = __bfloat1622float2(src[2 * i + 1]);
    dst[i] = make_float4(a.x, a.y, b.x, b.y);
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

void host_convert(void* dst, DType dd, const void* src, DType sd, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double x = sd == DType::F32   ? double(static_cast<const float*>(src)[i])
               : sd == DType::F64 ? static_cast<const double*>(src)[i]
                                  : double(bf16_to_float(static_cast<const uint16_t*>(src)[i]));
    if (dd == DType::F32)
      static_cast<float*>(dst)[i] = static_cast<float>(x);
    else if (dd == DType::F64)
      static_cast<double*>(dst)[i] = x;
    else
      static_cast<uint16_t*>(dst)[i] = float_to_bf16(static_cast<float>(x));
  }
}

}  // namespace

void CudaKernels::copy(Tensor& dst, const Tensor& src) {
  const char* op = "copy";
  TEMPER_CHECK(dst.defined() || dst.numel() == 0, op, ": 'dst' is not allocated");
  TEMPER_CHECK(src.defined() || src.numel() == 0, op, ": 'src' is not allocated");
  TEMPER_CHECK(dst.numel() == src.numel(), op, ": dst has shape ", shape_str(dst.shape()), " but src has ",
               shape_str(src.shape()), " (element counts differ)");
  const int64_t n = src.numel();
  if (n == 0) return;
  const bool dst_dev = dst.device() == Device::CUDA, src_dev = src.device() == Device::CUDA;
  if (dst.dtype() == src.dtype()) {
    if (!dst_dev && !src_dev) {
      if (dst.raw() != src.raw()) std::memmove(dst.raw(), src.raw(), src.nbytes());
      return;
    }
    TEMPER_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDefault, stream_));
    if (!dst_dev || !src_dev) synchronize();
    return;
  }
  TEMPER_CHECK(is_convertible(dst.dtype()) && is_convertible(src.dtype()), op, ": cannot convert ",
               dtype_name(src.dtype()), " to ", dtype_name(dst.dtype()),
               " (the cuda backend converts between f32, f64 and bf16 only)");
  if (!dst_dev && !src_dev) {
    host_convert(dst.raw(), dst.dtype(), src.raw(), src.dtype(), n);
    return;
  }
  auto convert = [&](void* d, DType dd, const void* s, DType sd) {
    const int threads = 256;
    const bool pair = (dd == DType::BF16 && sd == DType::F32) || (dd == DType::F32 && sd == DType::BF16);
    if (pair && n % 4 == 0 && aligned(d, 16) && aligned(s, 16)) {
      const int64_t n4 = n / 4;
      const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n4 + threads - 1) / threads, 8192));
      if (dd == DType::BF16)
        f32_to_bf16_vec4<<<blocks, threads, 0, stream_>>>(static_cast<__nv_bfloat162*>(d),
                                                          static_cast<const float4*>(s), n4);
      else
        bf16_to_f32_vec4<<<blocks, threads, 0, stream_>>>(static_cast<float4*>(d),
                                                          static_cast<const __nv_bfloat162*>(s), n4);
      TEMPER_CUDA_CHECK_LAUNCH();
      return;
    }
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, 65535));
    convert_kernel<<<blocks, threads, 0, stream_>>>(d, kind_of(dd), s, kind_of(sd), n);
    TEMPER_CUDA_CHECK_LAUNCH();
  };
  if (dst_dev && src_dev) {
    TEMPER_CHECK(dst.raw() != src.raw(), op, ": in-place dtype conversion is not supported");
    convert(dst.raw(), dst.dtype(), src.raw(), src.dtype());
  } else if (dst_dev) {  // host -> device: stage the source bytes, convert on the device
    Tensor stage = alloc(src.shape(), src.dtype());
    TEMPER_CUDA_CHECK(cudaMemcpyAsync(stage.raw(), src.raw(), src.nbytes(), cudaMemcpyHostToDevice, stream_));
    convert(dst.raw(), dst.dtype(), stage.raw(), src.dtype());
    synchronize();
  } else {  // device -> host: convert on the device, then copy out
    Tensor stage = alloc(src.shape(), dst.dtype());
    convert(stage.raw(), dst.dtype(), src.raw(), src.dtype());
    TEMPER_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), stage.raw(), dst.nbytes(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }
}

}  // namespace temper
