#include "kernels/kernels.h"

namespace temper {

#ifndef TEMPER_HAVE_CUDA
std::unique_ptr<Kernels> make_cuda_kernels(int) {
  fail("backend 'cuda' requested, but this temper was built without CUDA (configure with -DTEMPER_CUDA=ON)");
}
#endif

std::unique_ptr<Kernels> make_kernels(const std::string& backend, int device_index) {
  if (backend == "cpu") return make_cpu_kernels();
  if (backend == "cuda") return make_cuda_kernels(device_index);
  fail("unknown backend '", backend, "' (expected cpu or cuda)");
}

}  // namespace temper
