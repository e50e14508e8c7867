// Error reporting and argument checks shared by the CUDA kernel files.
#include <limits>

#include "kernels/cuda/cuda_common.h"

namespace temper::cuda {

void fail_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  fail("CUDA error at ", file, ":", line, ": ", expr, " returned ", cudaGetErrorName(err), " (",
       cudaGetErrorString(err), ")");
}

void fail_cublas(cublasStatus_t st, const char* expr, const char* file, int line) {
  fail("cuBLAS error at ", file, ":", line, ": ", expr, " returned ", cublasGetStatusName(st), " (",
       cublasGetStatusString(st), ")");
}

void check_on_device(const char* op, std::initializer_list<NamedTensor> ts) {
  for (const auto& [name, t] : ts) {
    TEMPER_CHECK(t->defined() || t->numel() == 0, op, ": tensor '", name, "' is not allocated");
    TEMPER_CHECK(t->device() == Device::CUDA, op, ": tensor '", name, "' lives on ", device_name(t->device()),
                 ", but the cuda backend only works on device tensors (copy it with Kernels::copy first)");
  }
}

void check_dtype(const char* op, const char* name, const Tensor& t, DType want) {
  check_on_device(op, {{name, &t}});
  TEMPER_CHECK(t.dtype() == want, op, ": tensor '", name, "' ", shape_str(t.shape()), " has dtype ",
               dtype_name(t.dtype()), ", the cuda backend expects ", dtype_name(want));
}

void check_i32(const char* op, const char* name, const Tensor& t, int64_t n) {
  check_dtype(op, name, t, DType::I32);
  TEMPER_CHECK(t.numel() == n, op, ": '", name, "' has shape ", shape_str(t.shape()), " (", t.numel(),
               " elements), expected ", n, " elements");
}

unsigned grid_for(int64_t n, int threads, const char* op) {
  const int64_t blocks = (n + threads - 1) / threads;
  TEMPER_CHECK(blocks <= std::numeric_limits<int>::max(), op, ": ", n,
               " elements need more thread blocks than one launch allows");
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

}  // namespace temper::cuda
