// Deterministic reductions for the CUDA backend's weight gradients: kernels
// that used to add per-block partial sums into a gradient with float atomics
// (whose order, and so whose last bits, vary from run to run) now write the
// partials to a scratch buffer part[nparts, C] and call add_column_sums, which
// adds them in a fixed order (part 0, 1, ..., nparts - 1):
//   dst[c] += sum_p part[p * C + c]
// Wide rows: one thread per column, a sequential loop over the parts. Narrow
// rows (C < 128, e.g. the 4 PolyNorm coefficients or one lambda): one block per
// column, each thread a fixed stride of parts, then a fixed shuffle tree.
// Either way the result depends only on the inputs and the part count.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace temper::cuda {

void add_column_sums(cudaStream_t stream, float* dst, const float* part, int64_t nparts, int64_t C);

}  // namespace temper::cuda
