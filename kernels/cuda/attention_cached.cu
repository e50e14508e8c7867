// CUDA backend: attention of new query tokens against the generation KV cache
// (kernels.h attention_cached). kcache, vcache [S, T, KVH, D] bf16; token n
// attends to positions [0, pos[n]] of slot[n]; GQA as in attention_forward.
//
// Tensor-core path (D = 64 or 128, 16-byte aligned q and caches): one block of
// 3 warps per (token, kv head, up to 8 query heads of its group, split). Tiles
// of 48 cached positions (K and V rows) stream into shared memory with cp.async
// (two stages: tile t+1 in flight while tile t is used; four blocks per
// multiprocessor at D = 128); warp w takes the tile's positions 16w .. 16w+15.
// (When the blocks are fewer than the multiprocessors: 4 warps, 64-position tiles.)
// Scores S = Q K^T and O += P V run as mma.sync m16n8k16 (bf16 in, f32
// accumulators) with the group's query heads as the 16 rows of A (rows past the
// group are zero): K fragments by ldmatrix, V by ldmatrix.trans, P straight from
// the score accumulators (attention_common.h). Each warp keeps an online softmax
// (log2 domain, f32) per head; the warps merge through shared memory in a fixed
// order. Decode of a batch that covers the GPU runs one split per (token, kv
// head); a small batch cuts each token's positions into equal splits (their
// count from the batch and the capacity T, their length from pos[n] on the
// device: launch parameters never depend on the positions, so the launch may be
// recorded into a CUDA graph), and a second kernel merges the splits' partial
// (max, sum, unnormalised output) in split order: no atomics, the same bits
// every run.
//
// Generic path (any D <= 256, unaligned rows): one block (4 warps) per (token,
// kv head, up to 8 query heads, split); warps take tiles of 32 positions
// round-robin on the CUDA cores (scores lane-per-position with the K row loaded
// whole, P V lane-per-element; see cached_attn_kernel) and merge through shared
// memory, the same split-K merge after.
//
// A slot or position out of range yields NaN outputs for that token (kernels
// never throw on the device). For benchmarks and tests: TEMPER_ATTN_CACHED=generic
// forces the generic path, TEMPER_ATTN_CACHED_SPLITS=<n> the split count of the
// tensor-core path, TEMPER_ATTN_CACHED_WARPS=2 or 4 its blocks of 2 or 4 warps
// (32- or 64-position tiles, six or three blocks per multiprocessor at D = 128).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

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

// ---- tensor-core path ---------------------------------------------------------

// W warps per block, 16 positions each per stage: tiles of 16 W positions, two
// stages. W = 3 at D = 128: 52 KB of shared memory and 168 registers a thread,
// four blocks per multiprocessor (W = 2: 35 KB, six; W = 4: 68 KB, three).
constexpr int kFastStages = 2;

template <int D, int W>
struct FastCfg {
  static constexpr int kThreads = 32 * W;
  static constexpr int kTile = 16 * W;                    // positions per stage
  static constexpr int kPitch = D + 8;                    // bf16 per smem row (ldmatrix without conflicts)
  static constexpr int kStage = 2 * kTile * kPitch;       // K tile then V tile
  static constexpr size_t kTiles = size_t(kFastStages) * kStage * sizeof(__nv_bfloat16);
  static constexpr size_t kMerge = (size_t(W) * kHeadsPerBlock * (D + 2)) * sizeof(float);
  static constexpr size_t kSmem = kTiles > kMerge ? kTiles : kMerge;
  static constexpr int kMinBlocks = W == 2 ? 6 : W == 3 ? 4 : 3;  // what the shared memory allows at D = 128
};

__device__ __forceinline__ uint32_t ld_bf16x2(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Positions per split of a token at position p: the p + 1 cached positions cut
// into `splits` equal parts (multiples of 16), so every split of a long enough
// context has work whatever the cache capacity; ceil((p + 1) / chunk) splits hold
// positions.
__device__ __forceinline__ int split_chunk(int p, int splits) {
  return ((p + splits) / splits + 15) / 16 * 16;
}

// grid (N, KVH * hchunks, splits), FastCfg::kThreads threads, FastCfg::kSmem bytes.
// splits == 1: writes out; else part_o [N, H, splits, D] (unnormalised) and
// part_ml [N, H, splits, 2] (max in log2 units, sum) for the splits that hold
// positions; cached_merge_kernel reads only those.
template <int D, int W>
__global__ void __launch_bounds__(FastCfg<D, W>::kThreads, FastCfg<D, W>::kMinBlocks)
    cached_mma_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ part_o, float* __restrict__ part_ml,
                      const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ kc,
                      const __nv_bfloat16* __restrict__ vc, const int32_t* __restrict__ slot,
                      const int32_t* __restrict__ pos, CacheArgs a) {
  using Cfg = FastCfg<D, W>;
  constexpr int kPitch = Cfg::kPitch, kTile = Cfg::kTile, kThreads = Cfg::kThreads, KS = D / 16, ND = D / 8;
  extern __shared__ __align__(16) unsigned char fast_smem[];
  __nv_bfloat16* tiles = reinterpret_cast<__nv_bfloat16*>(fast_smem);

  const int n = blockIdx.x, g = blockIdx.y / a.hchunks, hc = blockIdx.y % a.hchunks, split = blockIdx.z;
  const int h0 = g * a.group + hc * kHeadsPerBlock;
  const int nh = min(kHeadsPerBlock, a.group - hc * kHeadsPerBlock);
  const int s = slot[n], p = pos[n];
  if (bad_token(s, p, a)) {
    if (a.splits == 1)  // (with splits, the merge kernel writes the NaNs)
      for (int idx = threadIdx.x; idx < nh * D; idx += kThreads)
        out[(int64_t(n) * a.H + h0) * D + idx] = __float2bfloat16_rn(NAN);
    return;
  }
  const int chunk = split_chunk(p, a.splits);
  const int start = split * chunk;
  const int end = min(p + 1, start + chunk);
  if (start >= end) return;  // a split past the token's position: nothing to read, nothing to merge
  const int ntiles = (end - start + kTile - 1) / kTile;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = lane >> 2, tig = lane & 3;
  const int64_t row_stride = int64_t(a.KVH) * D;
  const __nv_bfloat16* kbase = kc + (int64_t(s) * a.T * a.KVH + g) * D;
  const __nv_bfloat16* vbase = vc + (int64_t(s) * a.T * a.KVH + g) * D;

  // Tile t: positions start + kTile t .. into stage t % kFastStages; rows past
  // `end` are zero-filled (never read from memory).
  auto load_tile = [&](int t) {
    __nv_bfloat16* ks = tiles + (t % kFastStages) * Cfg::kStage;
    __nv_bfloat16* vs = ks + kTile * kPitch;
    const int j0 = start + t * kTile;
    constexpr int kChunks = D / 8;  // 16-byte pieces per row
    static_assert(kTile * kChunks % kThreads == 0, "whole pieces per thread");
#pragma unroll
    for (int it = 0; it < kTile * kChunks / kThreads; ++it) {
      const int idx = threadIdx.x + it * kThreads;
      const int r = idx / kChunks, c = (idx % kChunks) * 8;
      const int j = j0 + r;
      const bool ok = j < end;
      const int64_t off = int64_t(ok ? j : start) * row_stride + c;
      cp_async16(ks + r * kPitch + c, kbase + off, ok);
      cp_async16(vs + r * kPitch + c, vbase + off, ok);
    }
  };
#pragma unroll
  for (int st = 0; st < kFastStages - 1; ++st) {
    if (st < ntiles) load_tile(st);
    cp_async_commit();
  }

  // A fragments of Q (rows = the block's query heads, zero past nh and for rows 8..15)
  uint32_t qa[KS][2];
  {
    const bool hv = grp < nh;
    const __nv_bfloat16* qrow = q + (int64_t(n) * a.H + h0 + (hv ? grp : 0)) * D;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      qa[kk][0] = hv ? ld_bf16x2(qrow + kk * 16 + 2 * tig) : 0u;
      qa[kk][1] = hv ? ld_bf16x2(qrow + kk * 16 + 8 + 2 * tig) : 0u;
    }
  }
  float acc[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.0f;
  float m_run = -INFINITY, l_run = 0.0f;  // head grp: running max (log2 units), this lane's share of the sum
  const int mi = lane >> 3, mr = lane & 7;  // ldmatrix: matrix and row this lane addresses

  for (int t = 0; t < ntiles; ++t) {
    if (t + kFastStages - 1 < ntiles) load_tile(t + kFastStages - 1);
    cp_async_commit();
    cp_async_wait<kFastStages - 1>();
    __syncthreads();
    const int jw = start + t * kTile + warp * 16;  // this warp's first position
    if (jw < end) {
      const __nv_bfloat16* ks = tiles + (t % kFastStages) * Cfg::kStage + warp * 16 * kPitch;
      const __nv_bfloat16* vs = ks + kTile * kPitch;
      // S = Q K^T over the warp's 16 positions: two 8-column blocks
      float sc[2][4];
#pragma unroll
      for (int nb = 0; nb < 2; ++nb) {
        sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk += 2) {
          uint32_t b0, b1, b2, b3;
          ldsm_x4(b0, b1, b2, b3, ks + (nb * 8 + mr) * kPitch + (kk + (mi >> 1)) * 16 + (mi & 1) * 8);
          const uint32_t a0[4] = {qa[kk][0], 0u, qa[kk][1], 0u};
          const uint32_t a1[4] = {qa[kk + 1][0], 0u, qa[kk + 1][1], 0u};
          mma16816(sc[nb], a0, b0, b1);
          mma16816(sc[nb], a1, b2, b3);
        }
      }
      // online softmax of head grp over positions jw + 8 nb + 2 tig + e
      float x[2][2], mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < 2; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = jw + nb * 8 + 2 * tig + e;
          x[nb][e] = j < end ? sc[nb][e] * a.scale_log2 : -INFINITY;
          mx = fmaxf(mx, x[nb][e]);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run, mx);  // finite: position jw < end is live
      const float alpha = exp2f(m_run - m_new);
      uint32_t pa[4];
      float psum = 0.0f;
#pragma unroll
      for (int nb = 0; nb < 2; ++nb) {
        const __nv_bfloat162 pb = __floats2bfloat162_rn(exp2f(x[nb][0] - m_new), exp2f(x[nb][1] - m_new));
        const float2 pf = __bfloat1622float2(pb);  // the sum counts the probabilities P V uses
        psum += pf.x + pf.y;
        pa[2 * nb] = *reinterpret_cast<const uint32_t*>(&pb);
        pa[2 * nb + 1] = 0u;  // rows 8..15
      }
      l_run = l_run * alpha + psum;
      m_run = m_new;
#pragma unroll
      for (int nd = 0; nd < ND; ++nd) {
        acc[nd][0] *= alpha;
        acc[nd][1] *= alpha;
      }
      // O += P V: V fragments of two 8-column blocks per ldmatrix.trans
#pragma unroll
      for (int nd = 0; nd < ND; nd += 2) {
        uint32_t v0, v1, v2, v3;
        ldsm_x4_t(v0, v1, v2, v3, vs + (mr + (mi & 1) * 8) * kPitch + (nd + (mi >> 1)) * 8);
        mma16816(acc[nd], pa, v0, v1);
        mma16816(acc[nd + 1], pa, v2, v3);
      }
    }
    __syncthreads();  // the stage is refilled by the next iteration's load
  }
  cp_async_wait<0>();  // (only empty groups can be pending)
  __syncthreads();

  // Merge the warps: [warps][heads][D] outputs, then [warps][heads] (max, sum).
  float* s_o = reinterpret_cast<float*>(fast_smem);
  float* s_ml = s_o + W * kHeadsPerBlock * D;
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
  if (grp < nh) {
    float* o = s_o + (warp * kHeadsPerBlock + grp) * D + 2 * tig;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) *reinterpret_cast<float2*>(o + nd * 8) = make_float2(acc[nd][0], acc[nd][1]);
    if (tig == 0) {
      s_ml[2 * (warp * kHeadsPerBlock + grp)] = m_run;
      s_ml[2 * (warp * kHeadsPerBlock + grp) + 1] = l_run;
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < nh * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < W; ++w) M = fmaxf(M, s_ml[2 * (w * kHeadsPerBlock + i)]);
    float L = 0.0f, O = 0.0f;  // M is finite: warp 0 saw position `start`
#pragma unroll
    for (int w = 0; w < W; ++w) {
      const float c = exp2f(s_ml[2 * (w * kHeadsPerBlock + i)] - M);  // 0 for a warp without positions
      L += c * s_ml[2 * (w * kHeadsPerBlock + i) + 1];
      O += c * s_o[(w * kHeadsPerBlock + i) * D + d];
    }
    const int h = h0 + i;
    if (a.splits == 1) {
      out[(int64_t(n) * a.H + h) * D + d] = __float2bfloat16_rn(O / L);
    } else {
      const int64_t at = (int64_t(n) * a.H + h) * a.splits + split;
      part_o[at * D + d] = O;
      if (d == 0) {
        part_ml[2 * at] = M;
        part_ml[2 * at + 1] = L;
      }
    }
  }
}

// Merges the splits that hold positions of the token, in split order: one block
// of 128 threads per (token, head). Split length: a.chunk (generic path) or
// split_chunk(pos, splits) (a.chunk == 0, tensor-core path).
__global__ void cached_merge_kernel(__nv_bfloat16* __restrict__ out, const float* __restrict__ part_o,
                                    const float* __restrict__ part_ml, const int32_t* __restrict__ slot,
                                    const int32_t* __restrict__ pos, CacheArgs a) {
  const int64_t nh = blockIdx.x;  // n * H + h
  const int n = int(nh / a.H);
  const int p = pos[n];
  if (bad_token(slot[n], p, a)) {
    for (int d = threadIdx.x; d < a.D; d += blockDim.x) out[nh * a.D + d] = __float2bfloat16_rn(NAN);
    return;
  }
  const int chunk = a.chunk > 0 ? a.chunk : split_chunk(p, a.splits);
  const int live = min(a.splits, p / chunk + 1);
  const float* ml = part_ml + nh * a.splits * 2;
  float M = -INFINITY;
  for (int sp = 0; sp < live; ++sp) M = fmaxf(M, ml[2 * sp]);
  float L = 0.0f;
  if (M != -INFINITY)
    for (int sp = 0; sp < live; ++sp) L += exp2f(ml[2 * sp] - M) * ml[2 * sp + 1];
  for (int d = threadIdx.x; d < a.D; d += blockDim.x) {
    float O = 0.0f;
    if (M != -INFINITY)
      for (int sp = 0; sp < live; ++sp) O += exp2f(ml[2 * sp] - M) * part_o[(nh * a.splits + sp) * a.D + d];
    out[nh * a.D + d] = __float2bfloat16_rn(L > 0.0f ? O / L : 0.0f);
  }
}

void launch_merge(CudaKernels& be, Tensor& out, const Tensor& part_o, const Tensor& part_ml, const Tensor& slot,
                  const Tensor& pos, const CacheArgs& a) {
  TEMPER_CHECK(int64_t(a.N) * a.H < (int64_t(1) << 31), "attention_cached: too many (token, head) pairs");
  cached_merge_kernel<<<unsigned(int64_t(a.N) * a.H), 128, 0, be.stream()>>>(
      cuda::bf(out), cuda::f32(part_o), cuda::f32(part_ml), cuda::i32(slot), cuda::i32(pos), a);
  TEMPER_CUDA_CHECK_LAUNCH();
}

template <int D, int W>
void launch_fast(CudaKernels& be, Tensor& out, const Tensor& q, const Tensor& kc, const Tensor& vc,
                 const Tensor& slot, const Tensor& pos, const CacheArgs& a) {
  using Cfg = FastCfg<D, W>;
  set_smem(cached_mma_kernel<D, W>, Cfg::kSmem);
  // all of the unified L1 / shared memory as shared memory: kMinBlocks blocks per multiprocessor
  TEMPER_CUDA_CHECK(cudaFuncSetAttribute(cached_mma_kernel<D, W>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         int(cudaSharedmemCarveoutMaxShared)));
  const dim3 grid(a.N, a.KVH * a.hchunks, a.splits);
  Tensor part_o, part_ml;
  if (a.splits > 1) {
    // persistent backend scratch: the launch may be recorded into a graph (cuda_graph.cu)
    part_o = be.scratch_f32(0, int64_t(a.N) * a.H * a.splits * a.D);
    part_ml = be.scratch_f32(1, int64_t(a.N) * a.H * a.splits * 2);
  }
  cached_mma_kernel<D, W><<<grid, Cfg::kThreads, Cfg::kSmem, be.stream()>>>(
      cuda::bf(out), a.splits > 1 ? cuda::f32(part_o) : nullptr, a.splits > 1 ? cuda::f32(part_ml) : nullptr,
      cuda::bf(q), cuda::bf(kc), cuda::bf(vc), cuda::i32(slot), cuda::i32(pos), a);
  TEMPER_CUDA_CHECK_LAUNCH();
  if (a.splits > 1) launch_merge(be, out, part_o, part_ml, slot, pos, a);
}

template <int E>
void launch_cached(CudaKernels& be, Tensor& out, const Tensor& q, const Tensor& kc, const Tensor& vc,
                   const Tensor& slot, const Tensor& pos, const CacheArgs& a) {
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
  if (a.splits > 1) launch_merge(be, out, part_o, part_ml, slot, pos, a);
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
  int sms = 0;
  TEMPER_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_));
  const int64_t base = int64_t(a.N) * a.KVH * a.hchunks;
  TEMPER_CHECK(base / a.hchunks <= (int64_t(1) << 31) && int64_t(a.KVH) * a.hchunks <= 65535, op,
               ": too many tokens or heads for one launch");
  const char* path_env = std::getenv("TEMPER_ATTN_CACHED");
  const bool force_generic = path_env && std::strcmp(path_env, "generic") == 0;
  if (!force_generic && (a.D == 64 || a.D == 128) && aligned16({&q, &kcache, &vcache})) {
    // One split per (token, kv head) once the blocks cover the multiprocessors:
    // more blocks then only add merges (measured on an H200, see
    // validation/rollout/results_2026-12-04_h200_decode_attention.md). Fewer
    // blocks than half the multiprocessors: split each token's positions into
    // equal parts of at least ~128 positions (of the capacity T) to reach them all.
    int64_t splits = 1;
    if (2 * base <= int64_t(sms))
      splits = std::max<int64_t>(1, std::min<int64_t>({(sms + base - 1) / base, int64_t(a.T) / 128, 1024}));
    const char* splits_env = std::getenv("TEMPER_ATTN_CACHED_SPLITS");
    if (splits_env && std::atoi(splits_env) > 0) splits = std::min(std::atoi(splits_env), 1024);
    a.splits = int(splits);
    a.chunk = 0;  // split_chunk(pos, splits) on the device
    a.vec = true;
    // 3 warps (four blocks per multiprocessor) once there are more blocks than
    // multiprocessors; fewer, each block alone on its multiprocessor: 4 warps,
    // whose 64-position tiles keep more bytes in flight (batch 64 of the 1.5B
    // shape: 8.9 instead of 9.5 us per call on an H200).
    const char* warps_env = std::getenv("TEMPER_ATTN_CACHED_WARPS");
    const int warps = warps_env && std::atoi(warps_env) > 0 ? std::atoi(warps_env)
                                                            : base * splits <= int64_t(sms) ? 4 : 3;
    auto run = [&](auto d) {
      constexpr int kD = decltype(d)::value;
      if (warps == 2)
        launch_fast<kD, 2>(*this, out, q, kcache, vcache, slot, pos, a);
      else if (warps == 4)
        launch_fast<kD, 4>(*this, out, q, kcache, vcache, slot, pos, a);
      else
        launch_fast<kD, 3>(*this, out, q, kcache, vcache, slot, pos, a);
    };
    if (a.D == 64)
      run(std::integral_constant<int, 64>{});
    else
      run(std::integral_constant<int, 128>{});
    return;
  }
  // Generic path: split the cache length while there are fewer than ~4 blocks per multiprocessor.
  const int64_t want = (4 * int64_t(sms) + base - 1) / base;
  const int64_t most = (int64_t(a.T) + 127) / 128;  // at least 128 positions per split
  a.splits = int(std::max<int64_t>(1, std::min<int64_t>({want, most, 1024})));
  a.chunk = ((a.T + a.splits - 1) / a.splits + 31) / 32 * 32;  // whole tiles of 32 positions
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
