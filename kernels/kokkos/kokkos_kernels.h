// The Kokkos backend: the Kernels interface on Kokkos Views in the default
// execution space's memory space (Serial or OpenMP on a host build; CUDA, HIP or
// SYCL on a site's device build). Tensors it allocates have Device::KOKKOS;
// copy() moves data to and from host tensors with Kokkos::deep_copy.
//
// Dtypes: act_dtype() is F32; every float tensor of an op is f32 (statistics and
// gradients too), index tensors are i32. Reductions accumulate in double, as the
// CPU reference does. copy() also converts f32/f64/bf16.
//
// This header names no Kokkos type, so code that only creates the backend builds
// without Kokkos headers. Built only when CMake finds Kokkos (TEMPER_KOKKOS).
#pragma once
#include <memory>
#include <string>

#include "kernels/kernels.h"

namespace temper {

// Initialises Kokkos on first use (once per process, never finalised: tensors may
// outlive any scope) and returns a backend.
std::unique_ptr<Kernels> make_kokkos_kernels();
// "Serial", "OpenMP", "Cuda", ...: the default execution space compiled in.
std::string kokkos_execution_space();

}  // namespace temper
