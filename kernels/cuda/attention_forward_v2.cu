// CUDA backend: causal varlen grouped-query attention, forward, variant v2
// (TEMPER_ATTN_FWD=v2, see attention_variant.h), D = 64 or 128 with 16-byte
// aligned tensors. Same meaning as flash_fwd_kernel in attention_forward.cu
// (masking, GQA, out and lse); the difference is the work split:
// Block: 4 warps, a tile of BM = 128 query rows of one head, 32 per warp as
// two m16 tiles, so every K and V fragment a warp loads with ldmatrix feeds
// two mma (the flash-attention-2 layout: half the shared-memory reads per
// FLOP of v1). Key blocks of BN = 64, K/V double-buffered with cp.async. For
// D = 64 the Q fragments stay in registers; for D = 128 they are re-read from
// shared memory at each k step (registers: 64 score + 128 output accumulators).
// A warp skips a key block that none of its 32 rows can see (above its
// diagonal or before its first row's document): a skipped block would add
// nothing (all scores -inf), so results equal those of computing it.
#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper::cuda::attn {

namespace {

constexpr int kBM = 128, kBN = 64, kThreadsV2 = 128, kMT = 2;  // kMT m16 tiles per warp

template <int D>
constexpr size_t smem_bytes_v2() {
  return size_t(kBM + 4 * kBN) * (D + 8) * sizeof(__nv_bfloat16);
}

template <int D>
__global__ void __launch_bounds__(kThreadsV2)
    flash_fwd_v2_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ lse,
                        const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                        const __nv_bfloat16* __restrict__ v, const int32_t* __restrict__ cu, Dims dm,
                        float scale_log2, int n_tiles) {
  constexpr int BM = kBM, BN = kBN, LD = D + 8, MT = kMT;
  constexpr int KS = D / 16;  // k steps of Q K^T
  constexpr int NS = BN / 8;  // 8-column tiles of S
  constexpr int NO = D / 8;   // 8-column tiles of O
  constexpr bool kQReg = D == 64;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [BM][LD]; later the output staging
  __nv_bfloat16* sK = sQ + BM * LD;                                 // [2][BN][LD]
  __nv_bfloat16* sV = sK + 2 * BN * LD;                             // [2][BN][LD]
  __shared__ int s_begin[BM];                                       // document start of each query row

  const int tile = n_tiles - 1 - int(blockIdx.y);  // the longest rows start first
  const int q0 = tile * BM, h = blockIdx.x, g = h / (dm.H / dm.KVH);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = lane >> 2, tig = lane & 3;

  for (int r = threadIdx.x; r < BM; r += kThreadsV2) {
    const int i = q0 + r;
    s_begin[r] = i < dm.N ? cu[doc_of(cu, dm.S, i)] : 0x7fffffff;
  }
  __syncthreads();
  const int last_row = min(q0 + BM, dm.N) - 1;
  const int kv_lo = s_begin[0], kv_hi = last_row + 1;
  const int nblocks = (kv_hi - kv_lo + BN - 1) / BN;

  cp_tile<D, kThreadsV2>(sQ, q, q0, BM, dm.N, dm.H, h);
  cp_tile<D, kThreadsV2>(sK, k, kv_lo, BN, dm.N, dm.KVH, g);
  cp_tile<D, kThreadsV2>(sV, v, kv_lo, BN, dm.N, dm.KVH, g);
  cp_async_commit();

  // This warp's rows: local wr0 .. wr0 + 31; rows at or past N are never stored.
  const int wr0 = warp * (16 * MT);
  const int w_first = q0 + wr0;                       // first row (may be >= N)
  const int w_last = min(w_first + 16 * MT, dm.N) - 1;  // last valid row (< w_first if none)
  const int w_begin_first = s_begin[wr0];             // smallest document start of the warp's rows
  const int w_begin_last = w_last >= w_first ? s_begin[w_last - q0] : 0x7fffffff;  // largest (valid rows)
  int row[MT][2], beg[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      row[mt][hf] = w_first + mt * 16 + hf * 8 + grp;
      beg[mt][hf] = s_begin[wr0 + mt * 16 + hf * 8 + grp];
    }
  float m[MT][2], l[MT][2];  // l: this thread's partial row sums
  float o[MT][NO][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
    for (int t = 0; t < NO; ++t) o[mt][t][0] = o[mt][t][1] = o[mt][t][2] = o[mt][t][3] = 0.0f;
  }
  uint32_t qf[MT][kQReg ? KS : 1][4];  // D = 64: Q fragments held for the whole loop
  const __nv_bfloat16* q_frag = sQ + (wr0 + (lane & 15)) * LD + (lane >> 4) * 8;  // + mt*16*LD + ks*16

  for (int jb = 0; jb < nblocks; ++jb) {
    const int k0 = kv_lo + jb * BN, buf = jb & 1;
    cp_async_wait<0>();
    __syncthreads();  // block jb has landed everywhere; every warp is done with block jb-1's buffer
    if constexpr (kQReg) {
      if (jb == 0) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int ks = 0; ks < KS; ++ks)
            ldsm_x4(qf[mt][ks][0], qf[mt][ks][1], qf[mt][ks][2], qf[mt][ks][3], q_frag + mt * 16 * LD + ks * 16);
      }
    }
    if (jb + 1 < nblocks) {
      cp_tile<D, kThreadsV2>(sK + (buf ^ 1) * BN * LD, k, k0 + BN, BN, dm.N, dm.KVH, g);
      cp_tile<D, kThreadsV2>(sV + (buf ^ 1) * BN * LD, v, k0 + BN, BN, dm.N, dm.KVH, g);
      cp_async_commit();
    }
    // Can any of this warp's rows see a key of the block? (warp-uniform)
    if (k0 > w_last || k0 + BN - 1 < w_begin_first) continue;
    const __nv_bfloat16* Kb = sK + buf * BN * LD;
    const __nv_bfloat16* Vb = sV + buf * BN * LD;

    float s[MT][NS][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int t = 0; t < NS; ++t) s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (kQReg) {
          a[mt][0] = qf[mt][ks][0];
          a[mt][1] = qf[mt][ks][1];
          a[mt][2] = qf[mt][ks][2];
          a[mt][3] = qf[mt][ks][3];
        } else {
          ldsm_x4(a[mt][0], a[mt][1], a[mt][2], a[mt][3], q_frag + mt * 16 * LD + ks * 16);
        }
      }
#pragma unroll
      for (int np = 0; np < NS / 2; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, Kb + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD + ks * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816(s[mt][2 * np], a[mt], b0, b1);
          mma16816(s[mt][2 * np + 1], a[mt], b2, b3);
        }
      }
    }
    // Mask only where a key may lie past a row (diagonal) or before a row's document.
    const bool need_mask = (k0 + BN - 1 > w_first) || (k0 < w_begin_last);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int t = 0; t < NS; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[mt][t][e] * scale_log2;
          if (need_mask) {
            const int j = k0 + t * 8 + 2 * tig + (e & 1);
            if (j > row[mt][e >> 1] || j < beg[mt][e >> 1]) x = -INFINITY;
          }
          s[mt][t][e] = x;
        }
      }
      // Online softmax (log2 domain) of the rows grp and grp + 8 of m-tile mt.
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        float mx = m[mt][hf];
#pragma unroll
        for (int t = 0; t < NS; ++t) mx = fmaxf(mx, fmaxf(s[mt][t][2 * hf], s[mt][t][2 * hf + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // A row with no key yet keeps m = -inf; subtract 0 then so exp2 gives 0, not NaN.
        const float base = mx == -INFINITY ? 0.0f : mx;
        const float alpha = exp2f(m[mt][hf] - base);
        m[mt][hf] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int t = 0; t < NS; ++t) {
          s[mt][t][2 * hf] = exp2f(s[mt][t][2 * hf] - base);
          s[mt][t][2 * hf + 1] = exp2f(s[mt][t][2 * hf + 1] - base);
          sum += s[mt][t][2 * hf] + s[mt][t][2 * hf + 1];
        }
        l[mt][hf] = l[mt][hf] * alpha + sum;
#pragma unroll
        for (int t = 0; t < NO; ++t) {
          o[mt][t][2 * hf] *= alpha;
          o[mt][t][2 * hf + 1] *= alpha;
        }
      }
    }
    // O += P V: P straight from the score accumulators; each V fragment feeds both m-tiles.
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < NO / 2; ++dp) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, Vb + (kk * 16 + (lane & 15)) * LD + dp * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816(o[mt][2 * dp], a[mt], b0, b1);
          mma16816(o[mt][2 * dp + 1], a[mt], b2, b3);
        }
      }
    }
  }

  // Epilogue: full row sums across the quad, normalise, stage the warp's 32
  // rows in its own rows of sQ (only this warp ever read them), 16-byte stores.
  __syncwarp();  // every lane's last ldmatrix of sQ is done before any lane overwrites it
  __nv_bfloat16* stage = sQ + wr0 * LD;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      float sum = l[mt][hf];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      l[mt][hf] = sum;
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      __nv_bfloat16* srow = stage + (mt * 16 + hf * 8 + grp) * LD + 2 * tig;
#pragma unroll
      for (int t = 0; t < NO; ++t)
        *reinterpret_cast<uint32_t*>(srow + t * 8) = pack_bf16(o[mt][t][2 * hf] * inv, o[mt][t][2 * hf + 1] * inv);
    }
  }
  __syncwarp();
  for (int idx = lane; idx < 16 * MT * (D / 8); idx += 32) {
    const int r = idx / (D / 8), c = (idx % (D / 8)) * 8;
    const int i = w_first + r;
    if (i < dm.N)
      *reinterpret_cast<uint4*>(out + (int64_t(i) * dm.H + h) * D + c) =
          *reinterpret_cast<const uint4*>(stage + r * LD + c);
  }
  if (tig == 0) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf)
        if (row[mt][hf] < dm.N) lse[int64_t(row[mt][hf]) * dm.H + h] = (m[mt][hf] + log2f(l[mt][hf])) * kLn2;
  }
}

template <int D>
void launch_v2(cudaStream_t stream, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& cu, const Dims& d) {
  const int n_tiles = (d.N + kBM - 1) / kBM;
  TEMPER_CHECK(n_tiles <= 65535, "attention_forward: N = ", d.N, " tokens is too many for one call (at most ",
               65535 * kBM, ")");
  constexpr size_t smem = smem_bytes_v2<D>();
  set_smem(flash_fwd_v2_kernel<D>, smem);
  flash_fwd_v2_kernel<D><<<dim3(d.H, n_tiles), kThreadsV2, smem, stream>>>(
      cuda::bf(out), cuda::f32(lse), cuda::bf(q), cuda::bf(k), cuda::bf(v), cuda::i32(cu), d,
      kLog2e / sqrtf(float(D)), n_tiles);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace

void flash_forward_v2(cudaStream_t stream, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Tensor& cu, const Dims& d) {
  if (d.D == 128)
    launch_v2<128>(stream, out, lse, q, k, v, cu, d);
  else
    launch_v2<64>(stream, out, lse, q, k, v, cu, d);
}

}  // namespace temper::cuda::attn
