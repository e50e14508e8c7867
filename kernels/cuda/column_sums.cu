// See column_sums.h.
#include "kernels/cuda/column_sums.h"

#include "kernels/cuda/cuda_common.h"

namespace temper::cuda {

namespace {

__global__ void column_sums_wide(float* dst, const float* part, int64_t nparts, int64_t C) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int64_t p = 0; p < nparts; ++p) s += part[p * C + c];
  dst[c] += s;
}

__global__ void column_sums_narrow(float* dst, const float* part, int64_t nparts, int64_t C) {
  __shared__ float scratch[32];
  const int64_t c = blockIdx.x;
  float s = 0.0f;
  for (int64_t p = threadIdx.x; p < nparts; p += blockDim.x) s += part[p * C + c];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) dst[c] += s;
}

}  // namespace

void add_column_sums(cudaStream_t stream, float* dst, const float* part, int64_t nparts, int64_t C) {
  if (C <= 0 || nparts <= 0) return;
  if (C < 128) {
    column_sums_narrow<<<unsigned(C), 256, 0, stream>>>(dst, part, nparts, C);
  } else {
    column_sums_wide<<<grid_for(C, 256, "add_column_sums"), 256, 0, stream>>>(dst, part, nparts, C);
  }
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper::cuda
