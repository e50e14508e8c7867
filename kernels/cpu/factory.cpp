#include "kernels/kernels.h"
#include "kernels/kokkos/kokkos_kernels.h"

namespace temper {

#ifndef TEMPER_HAVE_CUDA
std::unique_ptr<Kernels> make_cuda_kernels(int) {
  fail("backend 'cuda' requested, but this temper was built without CUDA (configure with -DTEMPER_CUDA=ON)");
}
#endif

#ifndef TEMPER_HAVE_KOKKOS
std::unique_ptr<Kernels> make_kokkos_kernels() {
  fail("backend 'kokkos' requested, but this temper was built without Kokkos (install Kokkos and KokkosKernels "
       "and configure with -DTEMPER_KOKKOS=ON; see the README's Kokkos section)");
}
std::string kokkos_execution_space() { return "none"; }
#endif

std::unique_ptr<Kernels> make_kernels(const std::string& backend, int device_index) {
  if (backend == "cpu") return make_cpu_kernels();
  if (backend == "cuda") return make_cuda_kernels(device_index);
  if (backend == "kokkos") return make_kokkos_kernels();
  fail("unknown backend '", backend, "' (expected cpu, cuda or kokkos)");
}

}  // namespace temper
