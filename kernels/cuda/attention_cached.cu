// CUDA backend: attention of new query tokens against the generation KV cache
// (kernels.h attention_cached). kcache, vcache [S, T, KVH, D] bf16; token n
// attends to positions [0, pos[n]] of slot[n]; GQA as in attention_forward.
//
// One block (4 warps) per (token, kv head, up to 8 query heads of its group,
// split): the block reads each cached K/V row once for all its query heads.
// Warps take tiles of 32 positions round-robin (scores lane-per-position with
// the K row loaded whole, P V lane-per-element; see cached_attn_kernel), each
// keeping an online softmax (log2 domain, f32) per head; the four warps merge
// through shared memory. Decode (few tokens) splits the cache length over
// several blocks (split-K, flash-decoding) whose partial (max, sum,
// unnormalised output) a second kernel merges; prefill (many tokens) runs one
// split. A slot or position out of
// range yields NaN outputs for that token (kernels never throw on the device).
#include <algorithm>
#include <cmath>

#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

using namespace cuda::attn;

constexpr int kCacheWarps = 4, kCacheThreads = 32 * kCacheWarps;
constexpr int kHeadsPerBlock = 8;  // query heads of one kv group per block
constexpr int kCacheMaxD = 256;

struct CacheArgs {
  int N, H, KVH, D, S, T;
  int group, hchunks, splits, chunk;
  bool vec;  // D == 32 E and rows 16-byte aligned: vector loads
  float scale_log2;
};

// Elements [lane E, lane E + E) of a bf16 row of D, zero past D.
template <int E>
__device__ __forceinline__ void load_row(float (&x)[E], const __nv_bfloat16* row, int lane, int D, bool vec) {
  if (vec) {
    if constexpr (E == 8) {
      const uint4 u = *reinterpret_cast<const uint4*>(row + lane * 8);
      const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(b[e]);
        x[2 * e] = f.x;
        x[2 * e + 1] = f.y;
      }
      return;
    } else if constexpr (E == 4) {
      const uint2 u = *reinterpret_cast<const uint2*>(row + lane * 4);
      const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float2 f = __bfloat1622float2(b[e]);
        x[2 * e] = f.x;
        x[2 * e + 1] = f.y;
      }
      return;
    }
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane * E + e;
    x[e] = d < D ? __bfloat162float(row[d]) : 0.0f;
  }
}

__device__ __forceinline__ bool bad_token(int s, int p, const CacheArgs& a) {
  return s < 0 || s >= a.S || p < 0 || p >= a.T;
}

// grid (N, KVH * hchunks, splits), kCacheThreads threads.
// splits == 1: writes out; else writes part_o [N, H, splits, D] (unnormalised)
// and part_ml [N, H, splits, 2] (running max in log2 units, sum).
//
// Each warp takes tiles of 32 positions. Scores: lane l owns position j0 + l and
// reads its whole K row (16-byte loads, all issued before the arithmetic, so a
// warp keeps a tile's 32 rows in flight) against the block's query heads held
// in shared memory: no shuffles per position. The tile's softmax update needs
// one warp max per head; the probabilities go through shared memory to the
// P V product, where lane l owns elements [l E, l E + E) of the output and the
// warp reads V rows (coalesced) eight at a time.
template <int E>
__global__ void __launch_bounds__(kCacheThreads)
    cached_attn_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ part_o, float* __restrict__ part_ml,
                       const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ kc,
                       const __nv_bfloat16* __restrict__ vc, const int32_t* __restrict__ slot,
                       const int32_t* __restrict__ pos, CacheArgs a) {
  // [warps][heads][D] acc, [warps][heads] m and l, [heads][D] scaled q, [warps][heads][32] p
  extern __shared__ __align__(16) float cs[];
  float* s_acc = cs;
  float* s_m = s_acc + kCacheWarps * kHeadsPerBlock * a.D;
  float* s_l = s_m + kCacheWarps * kHeadsPerBlock;
  float* s_q = s_l + kCacheWarps * kHeadsPerBlock;
  float* s_p = s_q + kHeadsPerBlock * a.D;

  const int n = blockIdx.x, g = blockIdx.y / a.hchunks, hc = blockIdx.y % a.hchunks, split = blockIdx.z;
  const int h0 = g * a.group + hc * kHeadsPerBlock;
  const int nh = min(kHeadsPerBlock, a.group - hc * kHeadsPerBlock);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int s = slot[n], p = pos[n];
  if (bad_token(s, p, a)) {
    if (a.splits == 1)  // (with splits, the merge kernel writes the NaNs)
      for (int idx = threadIdx.x; idx < nh * a.D; idx += kCacheThreads)
        out[(int64_t(n) * a.H + h0 + idx / a.D) * a.D + idx % a.D] = __float2bfloat16_rn(NAN);
    return;
  }
  const int start = split * a.chunk, end = min(p + 1, start + a.chunk);
  // the block's query heads h0 .. h0 + nh - 1 are contiguous in q
  const __nv_bfloat16* qrow = q + (int64_t(n) * a.H + h0) * a.D;
  for (int idx = threadIdx.x; idx < nh * a.D; idx += kCacheThreads)
    s_q[idx] = __bfloat162float(qrow[idx]) * a.scale_log2;
  __syncthreads();

  float acc[kHeadsPerBlock][E], m[kHeadsPerBlock], lsum[kHeadsPerBlock];
#pragma unroll
  for (int i = 0; i < kHeadsPerBlock; ++i) {
    m[i] = -INFINITY;
    lsum[i] = 0.0f;  // this lane's share of the sum
#pragma unroll
    for (int e = 0; e < E; ++e) acc[i][e] = 0.0f;
  }
  float* my_p = s_p + warp * kHeadsPerBlock * 32;
  const int64_t row_stride = int64_t(a.KVH) * a.D;
  const __nv_bfloat16* kbase = kc + (int64_t(s) * a.T * a.KVH + g) * a.D;
  const __nv_bfloat16* vbase = vc + (int64_t(s) * a.T * a.KVH + g) * a.D;
  constexpr int kChunks = 4 * E;                        // 8-element pieces of a row of D = 32 E
  constexpr int kBatch = kChunks < 16 ? kChunks : 16;   // pieces loaded before the arithmetic
  for (int j0 = start + warp * 32; j0 < end; j0 += kCacheWarps * 32) {
    const int j = j0 + lane;
    const bool live = j < end;
    const __nv_bfloat16* krow = kbase + int64_t(live ? j : j0) * row_stride;
    float sc[kHeadsPerBlock];
#pragma unroll
    for (int i = 0; i < kHeadsPerBlock; ++i) sc[i] = 0.0f;
    if (a.vec) {
#pragma unroll
      for (int c0 = 0; c0 < kChunks; c0 += kBatch) {
        uint4 raw[kBatch];
#pragma unroll
        for (int c = 0; c < kBatch; ++c) raw[c] = __ldg(reinterpret_cast<const uint4*>(krow) + c0 + c);
#pragma unroll
        for (int c = 0; c < kBatch; ++c) {
          const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&raw[c]);
          float kf[8];
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float2 f = __bfloat1622float2(b[e]);
            kf[2 * e] = f.x;
            kf[2 * e + 1] = f.y;
          }
#pragma unroll
          for (int i = 0; i < kHeadsPerBlock; ++i) {
            if (i < nh) {
              const float4* qv = reinterpret_cast<const float4*>(s_q + i * a.D + (c0 + c) * 8);
              const float4 qa = qv[0], qb = qv[1];
              float x = sc[i];
              x = fmaf(qa.x, kf[0], x);
              x = fmaf(qa.y, kf[1], x);
              x = fmaf(qa.z, kf[2], x);
              x = fmaf(qa.w, kf[3], x);
              x = fmaf(qb.x, kf[4], x);
              x = fmaf(qb.y, kf[5], x);
              x = fmaf(qb.z, kf[6], x);
              x = fmaf(qb.w, kf[7], x);
              sc[i] = x;
            }
          }
        }
      }
    } else {
      for (int d = 0; d < a.D; ++d) {
        const float kv = __bfloat162float(krow[d]);
#pragma unroll
        for (int i = 0; i < kHeadsPerBlock; ++i)
          if (i < nh) sc[i] = fmaf(s_q[i * a.D + d], kv, sc[i]);
      }
    }
    // online softmax over the tile, per head
#pragma unroll
    for (int i = 0; i < kHeadsPerBlock; ++i) {
      if (i < nh) {
        const float x = live ? sc[i] : -INFINITY;
        const float m_new = fmaxf(m[i], cuda::warp_max(x));  // finite: lane 0 is live
        const float alpha = exp2f(m[i] - m_new);
        const float pj = live ? exp2f(x - m_new) : 0.0f;
        lsum[i] = lsum[i] * alpha + pj;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[i][e] *= alpha;
        m[i] = m_new;
        my_p[i * 32 + lane] = pj;
      }
    }
    __syncwarp();
    const int cnt = min(32, end - j0);
    for (int jj = 0; jj < cnt; jj += 8) {
      float vr[8][E];
#pragma unroll
      for (int u = 0; u < 8; ++u)  // rows past the tile have p = 0; clamp them to a valid row
        load_row<E>(vr[u], vbase + int64_t(min(j0 + jj + u, end - 1)) * row_stride, lane, a.D, a.vec);
#pragma unroll
      for (int i = 0; i < kHeadsPerBlock; ++i) {
        if (i < nh) {
          const float4 pa = *reinterpret_cast<const float4*>(my_p + i * 32 + jj);
          const float4 pb = *reinterpret_cast<const float4*>(my_p + i * 32 + jj + 4);
#pragma unroll
          for (int e = 0; e < E; ++e) {
            float y = acc[i][e];
            y = fmaf(pa.x, vr[0][e], y);
            y = fmaf(pa.y, vr[1][e], y);
            y = fmaf(pa.z, vr[2][e], y);
            y = fmaf(pa.w, vr[3][e], y);
            y = fmaf(pb.x, vr[4][e], y);
            y = fmaf(pb.y, vr[5][e], y);
            y = fmaf(pb.z, vr[6][e], y);
            y = fmaf(pb.w, vr[7][e], y);
            acc[i][e] = y;
          }
        }
      }
    }
    __syncwarp();
  }
  // Merge the warps: each publishes its state, then thread t handles elements t, t + 128, ...
#pragma unroll
  for (int i = 0; i < kHeadsPerBlock; ++i) {
    if (i < nh) {
      const float l = cuda::warp_sum(lsum[i]);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int d = lane * E + e;
        if (d < a.D) s_acc[(warp * kHeadsPerBlock + i) * a.D + d] = acc[i][e];
      }
      if (lane == 0) {
        s_m[warp * kHeadsPerBlock + i] = m[i];
        s_l[warp * kHeadsPerBlock + i] = l;
      }
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < nh * a.D; idx += kCacheThreads) {
    const int i = idx / a.D, d = idx % a.D, h = h0 + i;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kCacheWarps; ++w) M = fmaxf(M, s_m[w * kHeadsPerBlock + i]);
    float L = 0.0f, O = 0.0f;
    if (M != -INFINITY) {  // (an empty split has no position at all)
#pragma unroll
      for (int w = 0; w < kCacheWarps; ++w) {
        const float c = exp2f(s_m[w * kHeadsPerBlock + i] - M);
        L += c * s_l[w * kHeadsPerBlock + i];
        O += c * s_acc[(w * kHeadsPerBlock + i) * a.D + d];
      }
    }
    if (a.splits == 1) {
      out[(int64_t(n) * a.H + h) * a.D + d] = __float2bfloat16_rn(L > 0.0f ? O / L : 0.0f);
    } else {
      const int64_t at = (int64_t(n) * a.H + h) * a.splits + split;
      part_o[at * a.D + d] = O;
      if (d == 0) {
        part_ml[2 * at] = M;
        part_ml[2 * at + 1] = L;
      }
    }
  }
}

// Merges the splits: one block of 128 threads per (token, head).
__global__ void cached_merge_kernel(__nv_bfloat16* __restrict__ out, const float* __restrict__ part_o,
                                    const float* __restrict__ part_ml, const int32_t* __restrict__ slot,
                                    const int32_t* __restrict__ pos, CacheArgs a) {
  const int64_t nh = blockIdx.x;  // n * H + h
  const int n = int(nh / a.H);
  const bool bad = bad_token(slot[n], pos[n], a);
  const float* ml = part_ml + nh * a.splits * 2;
  float M = -INFINITY;
  for (int sp = 0; sp < a.splits; ++sp) M = fmaxf(M, ml[2 * sp]);
  float L = 0.0f;
  if (M != -INFINITY)
    for (int sp = 0; sp < a.splits; ++sp) L += exp2f(ml[2 * sp] - M) * ml[2 * sp + 1];
  for (int d = threadIdx.x; d < a.D; d += blockDim.x) {
    float O = 0.0f;
    if (M != -INFINITY)
      for (int sp = 0; sp < a.splits; ++sp) O += exp2f(ml[2 * sp] - M) * part_o[(nh * a.splits + sp) * a.D + d];
    out[nh * a.D + d] = __float2bfloat16_rn(bad ? NAN : (L > 0.0f ? O / L : 0.0f));
  }
}

template <int E>
void launch_cached(CudaKernels& be, Tensor& out, const Tensor& q, const Tensor& kc, const Tensor& vc,
                   const Tensor& slot, const Tensor& pos, const CacheArgs& a) {
  const char* op = "attention_cached";
  const size_t smem =
      (size_t(kCacheWarps) * kHeadsPerBlock * (a.D + 2 + 32) + size_t(kHeadsPerBlock) * a.D) * sizeof(float);
  set_smem(cached_attn_kernel<E>, smem);
  const dim3 grid(a.N, a.KVH * a.hchunks, a.splits);
  Tensor part_o, part_ml;
  if (a.splits > 1) {
    // persistent backend scratch: the launch may be recorded into a graph (cuda_graph.cu)
    part_o = be.scratch_f32(0, int64_t(a.N) * a.H * a.splits * a.D);
    part_ml = be.scratch_f32(1, int64_t(a.N) * a.H * a.splits * 2);
  }
  cached_attn_kernel<E><<<grid, kCacheThreads, smem, be.stream()>>>(
      cuda::bf(out), a.splits > 1 ? cuda::f32(part_o) : nullptr, a.splits > 1 ? cuda::f32(part_ml) : nullptr,
      cuda::bf(q), cuda::bf(kc), cuda::bf(vc), cuda::i32(slot), cuda::i32(pos), a);
  TEMPER_CUDA_CHECK_LAUNCH();
  if (a.splits > 1) {
    TEMPER_CHECK(int64_t(a.N) * a.H < (int64_t(1) << 31), op, ": too many (token, head) pairs");
    cached_merge_kernel<<<unsigned(int64_t(a.N) * a.H), 128, 0, be.stream()>>>(
        cuda::bf(out), cuda::f32(part_o), cuda::f32(part_ml), cuda::i32(slot), cuda::i32(pos), a);
    TEMPER_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void CudaKernels::attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache,
                                   const Tensor& slot, const Tensor& pos) {
  const char* op = "attention_cached";
  cuda::check_dtype(op, "q", q, DType::BF16);
  cuda::check_dtype(op, "kcache", kcache, DType::BF16);
  cuda::check_dtype(op, "vcache", vcache, DType::BF16);
  cuda::check_dtype(op, "out", out, DType::BF16);
  TEMPER_CHECK(q.ndim() == 3, op, ": 'q' must be [N, H, D], got ", shape_str(q.shape()));
  TEMPER_CHECK(kcache.ndim() == 4, op, ": 'kcache' must be [S, T, KVH, D], got ", shape_str(kcache.shape()));
  cuda::check_shape(op, "vcache", vcache, kcache.shape());
  cuda::check_shape(op, "out", out, q.shape());
  CacheArgs a{};
  TEMPER_CHECK(q.dim(0) < (int64_t(1) << 31) && kcache.dim(0) < (int64_t(1) << 31) &&
                   kcache.dim(1) < (int64_t(1) << 31),
               op, ": 'q' ", shape_str(q.shape()), " or 'kcache' ", shape_str(kcache.shape()), " is too large");
  a.N = int(q.dim(0));
  a.H = int(q.dim(1));
  a.D = int(q.dim(2));
  a.S = int(kcache.dim(0));
  a.T = int(kcache.dim(1));
  a.KVH = int(kcache.dim(2));
  TEMPER_CHECK(kcache.dim(3) == a.D, op, ": 'kcache' ", shape_str(kcache.shape()), " has head dimension ",
               kcache.dim(3), " but 'q' ", shape_str(q.shape()), " has ", a.D);
  TEMPER_CHECK(a.KVH > 0 && a.H % a.KVH == 0, op, ": query heads H = ", a.H, " must be a multiple of kv heads KVH = ",
               a.KVH, " (from 'kcache' ", shape_str(kcache.shape()), ")");
  TEMPER_CHECK(a.D > 0 && a.D <= kCacheMaxD, op, ": head dimension D = ", a.D, " is not supported (1..", kCacheMaxD,
               ")");
  cuda::check_i32(op, "slot", slot, a.N);
  cuda::check_i32(op, "pos", pos, a.N);
  if (a.N == 0 || a.H == 0) return;
  TEMPER_CHECK(a.S > 0 && a.T > 0, op, ": the cache ", shape_str(kcache.shape()), " holds no positions");
  a.group = a.H / a.KVH;
  a.hchunks = (a.group + kHeadsPerBlock - 1) / kHeadsPerBlock;
  a.scale_log2 = kLog2e / std::sqrt(float(a.D));
  // Split the cache length while there are fewer than ~4 blocks per multiprocessor.
  int sms = 0;
  TEMPER_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_));
  const int64_t base = int64_t(a.N) * a.KVH * a.hchunks;
  const int64_t want = (4 * int64_t(sms) + base - 1) / base;
  const int64_t most = (int64_t(a.T) + 127) / 128;  // at least 128 positions per split
  a.splits = int(std::max<int64_t>(1, std::min<int64_t>({want, most, 1024})));
  a.chunk = ((a.T + a.splits - 1) / a.splits + 31) / 32 * 32;  // whole tiles of 32 positions
  TEMPER_CHECK(base / a.hchunks <= (int64_t(1) << 31) && int64_t(a.KVH) * a.hchunks <= 65535, op,
               ": too many tokens or heads for one launch");
  const int E = (a.D + 31) / 32 <= 2 ? 2 : (a.D + 31) / 32 <= 4 ? 4 : 8;
  a.vec = a.D == 32 * E && aligned16({&q, &kcache, &vcache});
  if (E == 2)
    launch_cached<2>(*this, out, q, kcache, vcache, slot, pos, a);
  else if (E == 4)
    launch_cached<4>(*this, out, q, kcache, vcache, slot, pos, a);
  else
    launch_cached<8>(*this, out, q, kcache, vcache, slot, pos, a);
}

}  // namespace temper
