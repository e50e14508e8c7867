// CUDA backend: kv_cache_write, the scatter of new keys and values into the
// generation cache kcache/vcache [S, T, KVH, D] (bf16) at (slot[n], pos[n]).
// One thread moves 16 bytes (8 bf16) when D is a multiple of 8, else one
// element. Out-of-range slot/pos cannot raise from the device: such rows are
// skipped (the host checks shapes; the generation code owns the indices).
#include <utility>

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

// rope_forward of the q heads and k heads (the rope.cu arithmetic: angle in double,
// rotation in f32), then kcache/vcache[slot[n], pos[n]] = rotated k[n], v[n]. Token n's
// q heads are read at qi + n * sq and written at qo + n * H * D; its k heads at
// ki + n * skv (written back when ko is set, at ko + n * KVH * D), v at vi + n * skv.
// One thread per (token, pair i < D/2), looping over the heads.
__global__ void rope_cache_kernel(const __nv_bfloat16* qi, __nv_bfloat16* qo, const __nv_bfloat16* ki,
                                  __nv_bfloat16* ko, const __nv_bfloat16* vi, int64_t sq, int64_t skv, __nv_bfloat16* kc,
                                  __nv_bfloat16* vc, const int32_t* slot, const int32_t* pos, int64_t N, int64_t H,
                                  int64_t KVH, int64_t D, int64_t S, int64_t T, double theta) {
  const int64_t half = D / 2;
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= N * half) return;
  const int64_t n = idx / half, i = idx % half;
  const double inv_freq = pow(theta, -2.0 * double(i) / double(D));
  double sn, cs;
  sincos(double(pos[n]) * inv_freq, &sn, &cs);
  const float cf = static_cast<float>(cs), sf = static_cast<float>(sn);
  for (int64_t h = 0; h < H; ++h) {
    const __nv_bfloat16* row = qi + n * sq + h * D;
    __nv_bfloat16* out = qo + (n * H + h) * D;
    const float x1 = __bfloat162float(row[i]), x2 = __bfloat162float(row[i + half]);
    out[i] = __float2bfloat16_rn(x1 * cf - x2 * sf);
    out[i + half] = __float2bfloat16_rn(x2 * cf + x1 * sf);
  }
  const int64_t s = slot[n], p = pos[n];
  const bool write = s >= 0 && s < S && p >= 0 && p < T;
  for (int64_t h = 0; h < KVH; ++h) {
    const __nv_bfloat16* row = ki + n * skv + h * D;
    const float x1 = __bfloat162float(row[i]), x2 = __bfloat162float(row[i + half]);
    const __nv_bfloat16 y1 = __float2bfloat16_rn(x1 * cf - x2 * sf), y2 = __float2bfloat16_rn(x2 * cf + x1 * sf);
    if (ko) {
      ko[(n * KVH + h) * D + i] = y1;
      ko[(n * KVH + h) * D + i + half] = y2;
    }
    if (write) {
      const int64_t dst = ((s * T + p) * KVH + h) * D;
      const __nv_bfloat16* vr = vi + n * skv + h * D;
      kc[dst + i] = y1;
      kc[dst + i + half] = y2;
      vc[dst + i] = vr[i];
      vc[dst + i + half] = vr[i + half];
    }
  }
}

}  // namespace

void CudaKernels::rope_cache_write(Tensor& q, Tensor& k, const Tensor& v, Tensor& kcache, Tensor& vcache,
                                   const Tensor& slot, const Tensor& pos, float theta) {
  const char* op = "rope_cache_write";
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"q", &q}, {"k", &k}, {"v", &v},
                                {"kcache", &kcache}, {"vcache", &vcache}})
    cuda::check_dtype(op, name, *t, DType::BF16);
  TEMPER_CHECK(kcache.ndim() == 4, op, ": 'kcache' must be [S, T, KVH, D], got ", shape_str(kcache.shape()));
  cuda::check_shape(op, "vcache", vcache, kcache.shape());
  const int64_t S = kcache.dim(0), T = kcache.dim(1), KVH = kcache.dim(2), D = kcache.dim(3);
  TEMPER_CHECK(k.ndim() == 3 && q.ndim() == 3, op, ": 'q' and 'k' must be [N, heads, D], got ", shape_str(q.shape()),
               " and ", shape_str(k.shape()));
  const int64_t N = k.dim(0), H = q.dim(1);
  cuda::check_shape(op, "k", k, {N, KVH, D});
  cuda::check_shape(op, "v", v, {N, KVH, D});
  cuda::check_shape(op, "q", q, {N, H, D});
  TEMPER_CHECK(D % 2 == 0, op, ": head dimension D = ", D, " must be even for rotate-half RoPE");
  TEMPER_CHECK(theta > 0.0f, op, ": rope theta must be positive, got ", theta);
  cuda::check_i32(op, "slot", slot, N);
  cuda::check_i32(op, "pos", pos, N);
  if (N == 0 || D == 0) return;
  rope_cache_kernel<<<cuda::grid_for(N * (D / 2), 128, op), 128, 0, stream_>>>(
      cuda::bf(q), cuda::bf(q), cuda::bf(k), cuda::bf(k), cuda::bf(v), H * D, KVH * D, cuda::bf(kcache),
      cuda::bf(vcache), cuda::i32(slot), cuda::i32(pos), N, H, KVH, D, S, T, double(theta));
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::qkv_rope_cache_write(Tensor& q, const Tensor& qkv, Tensor& kcache, Tensor& vcache,
                                       const Tensor& slot, const Tensor& pos, float theta) {
  const char* op = "qkv_rope_cache_write";
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"q", &q}, {"qkv", &qkv}, {"kcache", &kcache},
                                {"vcache", &vcache}})
    cuda::check_dtype(op, name, *t, DType::BF16);
  TEMPER_CHECK(kcache.ndim() == 4, op, ": 'kcache' must be [S, T, KVH, D], got ", shape_str(kcache.shape()));
  cuda::check_shape(op, "vcache", vcache, kcache.shape());
  const int64_t S = kcache.dim(0), T = kcache.dim(1), KVH = kcache.dim(2), D = kcache.dim(3);
  TEMPER_CHECK(q.ndim() == 3, op, ": 'q' must be [N, H, D], got ", shape_str(q.shape()));
  const int64_t N = q.dim(0), H = q.dim(1);
  cuda::check_shape(op, "q", q, {N, H, D});
  cuda::check_shape(op, "qkv", qkv, {N, H + 2 * KVH, D});
  TEMPER_CHECK(D % 2 == 0, op, ": head dimension D = ", D, " must be even for rotate-half RoPE");
  TEMPER_CHECK(theta > 0.0f, op, ": rope theta must be positive, got ", theta);
  cuda::check_i32(op, "slot", slot, N);
  cuda::check_i32(op, "pos", pos, N);
  if (N == 0 || D == 0) return;
  const __nv_bfloat16* base = cuda::bf(qkv);
  const int64_t stride = (H + 2 * KVH) * D;
  rope_cache_kernel<<<cuda::grid_for(N * (D / 2), 128, op), 128, 0, stream_>>>(
      base, cuda::bf(q), base + H * D, nullptr, base + (H + KVH) * D, stride, stride, cuda::bf(kcache),
      cuda::bf(vcache), cuda::i32(slot), cuda::i32(pos), N, H, KVH, D, S, T, double(theta));
  TEMPER_CUDA_CHECK_LAUNCH();
}

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
