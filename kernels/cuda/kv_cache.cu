// CUDA backend: kv_cache_write, the scatter of new keys and values into the
// generation cache kcache/vcache [S, T, KVH, D] (bf16) at (slot[n], pos[n]).
// One thread moves 16 bytes (8 bf16) when D is a multiple of 8, else one
// element. Out-of-range slot/pos cannot raise from the device: such rows are
// skipped (the host checks shapes; the generation code owns the indices).
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

// Rows of `row_elems` elements (one token's KVH*D) are copied in units of
// `Unit` (uint4 = 8 bf16, or one bf16); row_units = row_elems / elems per unit.
template <typename Unit>
__global__ void kv_write_kernel(Unit* kc, Unit* vc, const Unit* k, const Unit* v, const int32_t* slot,
                                const int32_t* pos, int64_t N, int64_t row_units, int64_t S, int64_t T) {
  const int64_t total = N * row_units;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / row_units, j = i % row_units;
    const int64_t s = slot[n], p = pos[n];
    if (s < 0 || s >= S || p < 0 || p >= T) continue;
    const int64_t dst = (s * T + p) * row_units + j;
    kc[dst] = k[i];
    vc[dst] = v[i];
  }
}

}  // namespace

void CudaKernels::kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v, const Tensor& slot,
                                 const Tensor& pos) {
  const char* op = "kv_cache_write";
  cuda::check_dtype(op, "kcache", kcache, DType::BF16);
  cuda::check_dtype(op, "vcache", vcache, DType::BF16);
  cuda::check_dtype(op, "k", k, DType::BF16);
  cuda::check_dtype(op, "v", v, DType::BF16);
  TEMPER_CHECK(kcache.ndim() == 4, op, ": 'kcache' must be [S, T, KVH, D], got ", shape_str(kcache.shape()));
  cuda::check_shape(op, "vcache", vcache, kcache.shape());
  const int64_t S = kcache.dim(0), T = kcache.dim(1), KVH = kcache.dim(2), D = kcache.dim(3);
  TEMPER_CHECK(k.ndim() == 3, op, ": 'k' must be [N, KVH, D], got ", shape_str(k.shape()));
  const int64_t N = k.dim(0);
  cuda::check_shape(op, "k", k, {N, KVH, D});
  cuda::check_shape(op, "v", v, {N, KVH, D});
  cuda::check_i32(op, "slot", slot, N);
  cuda::check_i32(op, "pos", pos, N);
  const int64_t row = KVH * D;
  if (N == 0 || row == 0) return;
  auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0; };
  if (row % 8 == 0 && aligned(kcache) && aligned(vcache) && aligned(k) && aligned(v)) {  // 16-byte moves
    const int64_t units = row / 8;
    kv_write_kernel<uint4><<<cuda::grid_stride_blocks(N * units, op), 256, 0, stream_>>>(
        static_cast<uint4*>(kcache.raw()), static_cast<uint4*>(vcache.raw()), static_cast<const uint4*>(k.raw()),
        static_cast<const uint4*>(v.raw()), cuda::i32(slot), cuda::i32(pos), N, units, S, T);
  } else {
    kv_write_kernel<__nv_bfloat16><<<cuda::grid_stride_blocks(N * row, op), 256, 0, stream_>>>(
        cuda::bf(kcache), cuda::bf(vcache), cuda::bf(k), cuda::bf(v), cuda::i32(slot), cuda::i32(pos), N, row, S, T);
  }
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace temper
