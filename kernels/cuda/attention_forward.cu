// CUDA backend: causal varlen grouped-query attention, forward.
// Head dims 64 and 128 (with 16-byte aligned tensors) run a flash-attention-2
// style kernel on the bf16 tensor cores (mma.sync m16n8k16, f32 accumulators,
// online softmax in f32); any other D <= 128 runs the scalar tiled kernel kept
// as the fallback. Both write out[N,H,D] (bf16) and lse[N,H] (f32, natural log
// of the scaled scores) for the backward pass.
#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/cudnn_attention.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

using namespace cuda::attn;

// ---- tensor-core flash forward (D = 64 or 128) ---------------------------------
// Block: 4 warps, a tile of kFwdBM = 64 query rows of one head (16 per warp),
// looping over key blocks of kFwdBN = 64 with K/V double-buffered in shared
// memory (cp.async of block j+1 overlaps the math of block j). Per key block
// a warp computes S = Q K^T (16 x 64, Q fragments held in registers), masks
// (only blocks on the diagonal or a document boundary), updates the online
// softmax in the log2 domain and accumulates O += P V, P straight from the S
// accumulators. Key blocks run from the document start of the tile's first
// row to its last row, so blocks above the diagonal or before the document
// are never visited.
constexpr int kFwdBM = 64, kFwdBN = 64, kFwdThreads = 128;

template <int D>
constexpr size_t fwd_smem_bytes() {
  return size_t(kFwdBM + 4 * kFwdBN) * (D + 8) * sizeof(__nv_bfloat16);
}

template <int D>
__global__ void __launch_bounds__(kFwdThreads)
    flash_fwd_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ lse, const __nv_bfloat16* __restrict__ q,
                     const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
                     const int32_t* __restrict__ cu, Dims dm, float scale_log2, int n_tiles) {
  constexpr int BM = kFwdBM, BN = kFwdBN, LD = D + 8;
  constexpr int KS = D / 16;   // k steps of Q K^T
  constexpr int NS = BN / 8;   // 8-column tiles of S
  constexpr int NO = D / 8;    // 8-column tiles of O
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [BM][LD]; later the output staging
  __nv_bfloat16* sK = sQ + BM * LD;                                 // [2][BN][LD]
  __nv_bfloat16* sV = sK + 2 * BN * LD;                             // [2][BN][LD]
  __shared__ int s_begin[BM];                                       // document start of each query row

  const int tile = n_tiles - 1 - int(blockIdx.y);  // the longest rows start first
  const int q0 = tile * BM, h = blockIdx.x, g = h / (dm.H / dm.KVH);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = lane >> 2, tig = lane & 3;

  if (threadIdx.x < BM) {
    const int i = q0 + threadIdx.x;
    s_begin[threadIdx.x] = i < dm.N ? cu[doc_of(cu, dm.S, i)] : 0x7fffffff;
  }
  __syncthreads();
  const int last_row = min(q0 + BM, dm.N) - 1;
  const int kv_lo = s_begin[0], kv_hi = last_row + 1;
  const int begin_last = s_begin[last_row - q0];
  const int nblocks = (kv_hi - kv_lo + BN - 1) / BN;

  cp_tile<D, kFwdThreads>(sQ, q, q0, BM, dm.N, dm.H, h);
  cp_tile<D, kFwdThreads>(sK, k, kv_lo, BN, dm.N, dm.KVH, g);
  cp_tile<D, kFwdThreads>(sV, v, kv_lo, BN, dm.N, dm.KVH, g);
  cp_async_commit();

  const int row_a = q0 + warp * 16 + grp, row_b = row_a + 8;  // this thread's two query rows
  const int beg_a = s_begin[warp * 16 + grp], beg_b = s_begin[warp * 16 + grp + 8];
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;  // l: this thread's partial sums
  float o[NO][4];
#pragma unroll
  for (int t = 0; t < NO; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
  uint32_t qf[KS][4];

  for (int jb = 0; jb < nblocks; ++jb) {
    const int k0 = kv_lo + jb * BN, buf = jb & 1;
    cp_async_wait<0>();
    __syncthreads();  // block jb has landed everywhere; every warp is done with block jb-1's buffer
    if (jb == 0) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks)
        ldsm_x4(qf[ks][0], qf[ks][1], qf[ks][2], qf[ks][3],
                sQ + (warp * 16 + (lane & 15)) * LD + ks * 16 + (lane >> 4) * 8);
    }
    if (jb + 1 < nblocks) {
      cp_tile<D, kFwdThreads>(sK + (buf ^ 1) * BN * LD, k, k0 + BN, BN, dm.N, dm.KVH, g);
      cp_tile<D, kFwdThreads>(sV + (buf ^ 1) * BN * LD, v, k0 + BN, BN, dm.N, dm.KVH, g);
      cp_async_commit();
    }
    const __nv_bfloat16* Kb = sK + buf * BN * LD;
    const __nv_bfloat16* Vb = sV + buf * BN * LD;

    float s[NS][4];
#pragma unroll
    for (int t = 0; t < NS; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int np = 0; np < NS / 2; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, Kb + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD + ks * 16 + ((lane >> 3) & 1) * 8);
        mma16816(s[2 * np], qf[ks], b0, b1);
        mma16816(s[2 * np + 1], qf[ks], b2, b3);
      }
    }
    const bool need_mask = (k0 + BN - 1 > q0) || (k0 < begin_last);
#pragma unroll
    for (int t = 0; t < NS; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[t][e] * scale_log2;
        if (need_mask) {
          const int j = k0 + t * 8 + 2 * tig + (e & 1);
          const int i = e < 2 ? row_a : row_b, b = e < 2 ? beg_a : beg_b;
          if (j > i || j < b) x = -INFINITY;
        }
        s[t][e] = x;
      }
    }
    float mx_a = m_a, mx_b = m_b;
#pragma unroll
    for (int t = 0; t < NS; ++t) {
      mx_a = fmaxf(mx_a, fmaxf(s[t][0], s[t][1]));
      mx_b = fmaxf(mx_b, fmaxf(s[t][2], s[t][3]));
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
    }
    // A row with no key yet keeps m = -inf; subtract 0 then so exp2 gives 0, not NaN.
    const float base_a = mx_a == -INFINITY ? 0.0f : mx_a, base_b = mx_b == -INFINITY ? 0.0f : mx_b;
    const float alpha_a = exp2f(m_a - base_a), alpha_b = exp2f(m_b - base_b);
    m_a = mx_a;
    m_b = mx_b;
    float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
    for (int t = 0; t < NS; ++t) {
      s[t][0] = exp2f(s[t][0] - base_a);
      s[t][1] = exp2f(s[t][1] - base_a);
      s[t][2] = exp2f(s[t][2] - base_b);
      s[t][3] = exp2f(s[t][3] - base_b);
      sum_a += s[t][0] + s[t][1];
      sum_b += s[t][2] + s[t][3];
    }
    l_a = l_a * alpha_a + sum_a;
    l_b = l_b * alpha_b + sum_b;
#pragma unroll
    for (int t = 0; t < NO; ++t) {
      o[t][0] *= alpha_a;
      o[t][1] *= alpha_a;
      o[t][2] *= alpha_b;
      o[t][3] *= alpha_b;
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < NO / 2; ++dp) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, Vb + (kk * 16 + (lane & 15)) * LD + dp * 16 + (lane >> 4) * 8);
        mma16816(o[2 * dp], a, b0, b1);
        mma16816(o[2 * dp + 1], a, b2, b3);
      }
    }
  }

  // Epilogue: full row sums across the quad, normalise, stage the warp's 16
  // rows in its own rows of sQ (only this warp ever read them), then 16-byte stores.
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
  }
  const float inv_a = l_a > 0.0f ? 1.0f / l_a : 0.0f, inv_b = l_b > 0.0f ? 1.0f / l_b : 0.0f;
  __nv_bfloat16* stage = sQ + warp * 16 * LD;
#pragma unroll
  for (int t = 0; t < NO; ++t) {
    *reinterpret_cast<uint32_t*>(stage + grp * LD + t * 8 + 2 * tig) = pack_bf16(o[t][0] * inv_a, o[t][1] * inv_a);
    *reinterpret_cast<uint32_t*>(stage + (grp + 8) * LD + t * 8 + 2 * tig) =
        pack_bf16(o[t][2] * inv_b, o[t][3] * inv_b);
  }
  __syncwarp();
  for (int idx = lane; idx < 16 * (D / 8); idx += 32) {
    const int r = idx / (D / 8), c = (idx % (D / 8)) * 8;
    const int i = q0 + warp * 16 + r;
    if (i < dm.N)
      *reinterpret_cast<uint4*>(out + (int64_t(i) * dm.H + h) * D + c) =
          *reinterpret_cast<const uint4*>(stage + r * LD + c);
  }
  if (tig == 0) {
    if (row_a < dm.N) lse[int64_t(row_a) * dm.H + h] = (m_a + log2f(l_a)) * kLn2;
    if (row_b < dm.N) lse[int64_t(row_b) * dm.H + h] = (m_b + log2f(l_b)) * kLn2;
  }
}

template <int D>
void launch_flash_forward(cudaStream_t stream, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                          const Tensor& v, const Tensor& cu, const Dims& d) {
  const int n_tiles = (d.N + kFwdBM - 1) / kFwdBM;
  TEMPER_CHECK(n_tiles <= 65535, "attention_forward: N = ", d.N, " tokens is too many for one call (at most ",
               65535 * kFwdBM, ")");
  constexpr size_t smem = fwd_smem_bytes<D>();
  set_smem(flash_fwd_kernel<D>, smem);
  flash_fwd_kernel<D><<<dim3(d.H, n_tiles), kFwdThreads, smem, stream>>>(
      cuda::bf(out), cuda::f32(lse), cuda::bf(q), cuda::bf(k), cuda::bf(v), cuda::i32(cu), d,
      kLog2e / sqrtf(float(D)), n_tiles);
  TEMPER_CUDA_CHECK_LAUNCH();
}

// ---- scalar fallback (any D <= 128; see attention_common.h) --------------------
// NACC = accumulators per thread = ceil(D / 8) rounded up to 8 or 16.
template <int NACC>
__global__ void __launch_bounds__(kThreads)
    scalar_fwd_kernel(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                         const __nv_bfloat16* v, const int32_t* cu, Dims dm, float scale) {
  extern __shared__ float smem[];
  const int D = dm.D, ld = D + 1;
  float* Qs = smem;                 // [kTile][ld], pre-scaled
  float* Ks = Qs + kTile * ld;      // [kTile][ld]
  float* Vs = Ks + kTile * ld;      // [kTile][ld]
  float* Ps = Vs + kTile * ld;      // [kTile][kTile + 1]
  __shared__ int row_begin[kTile];  // document start of each query row

  const int q0 = blockIdx.x * kTile, h = blockIdx.y, g = h / (dm.H / dm.KVH);
  const int r = threadIdx.x >> 3, sub = threadIdx.x & 7;
  const int i = q0 + r;

  load_tile(Qs, q, q0, dm.N, dm.H, h, D);
  for (int idx = threadIdx.x; idx < kTile * D; idx += blockDim.x) Qs[(idx / D) * ld + idx % D] *= scale;
  if (threadIdx.x < kTile) {
    const int ii = q0 + threadIdx.x;
    row_begin[threadIdx.x] = ii < dm.N ? cu[doc_of(cu, dm.S, ii)] : 0x7fffffff;
  }
  __syncthreads();

  const int kv_lo = row_begin[0], kv_hi = min(q0 + kTile, dm.N);
  const int my_begin = row_begin[r];
  float m_i = -INFINITY, l_i = 0.0f;
  float acc[NACC];
#pragma unroll
  for (int a = 0; a < NACC; ++a) acc[a] = 0.0f;

  for (int k0 = kv_lo; k0 < kv_hi; k0 += kTile) {
    __syncthreads();  // the previous tile's readers are done
    load_tile(Ks, k, k0, dm.N, dm.KVH, g, D);
    load_tile(Vs, v, k0, dm.N, dm.KVH, g, D);
    __syncthreads();

    float s[4];
    float mx = -INFINITY;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const int c = sub + 8 * kk, j = k0 + c;
      const bool valid = i < dm.N && j <= i && j >= my_begin;
      s[kk] = valid ? dot_rows(Qs + r * ld, Ks + c * ld, D) : -INFINITY;
      mx = fmaxf(mx, s[kk]);
    }
    mx = row_max8(mx);
    const float m_new = fmaxf(m_i, mx);
    float alpha = 1.0f, psum = 0.0f;
    if (m_new != -INFINITY) {
      alpha = expf(m_i - m_new);  // 0 when m_i is -inf
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        s[kk] = expf(s[kk] - m_new);
        psum += s[kk];
      }
    } else {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) s[kk] = 0.0f;
    }
    psum = row_sum8(psum);
    l_i = l_i * alpha + psum;
    m_i = m_new;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) Ps[r * (kTile + 1) + sub + 8 * kk] = s[kk];
    __syncwarp();  // a row's 8 threads share one warp

#pragma unroll
    for (int a = 0; a < NACC; ++a) acc[a] *= alpha;
    for (int c = 0; c < kTile; ++c) {
      const float p = Ps[r * (kTile + 1) + c];
      if (p == 0.0f) continue;
#pragma unroll
      for (int a = 0; a < NACC; ++a) {
        const int d = sub + 8 * a;
        if (d < D) acc[a] = fmaf(p, Vs[c * ld + d], acc[a]);
      }
    }
  }

  if (i < dm.N) {
    const float inv = l_i > 0.0f ? 1.0f / l_i : 0.0f;
    __nv_bfloat16* o = out + (int64_t(i) * dm.H + h) * D;
#pragma unroll
    for (int a = 0; a < NACC; ++a) {
      const int d = sub + 8 * a;
      if (d < D) o[d] = __float2bfloat16_rn(acc[a] * inv);
    }
    if (sub == 0) lse[int64_t(i) * dm.H + h] = m_i + logf(l_i);
  }
}

template <int NACC>
void launch_scalar_forward(cudaStream_t stream, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& cu, const Dims& d) {
  const size_t smem = (size_t(3) * kTile * (d.D + 1) + size_t(kTile) * (kTile + 1)) * sizeof(float);
  set_smem(scalar_fwd_kernel<NACC>, smem);
  dim3 grid((d.N + kTile - 1) / kTile, d.H);
  scalar_fwd_kernel<NACC><<<grid, kThreads, smem, stream>>>(cuda::bf(out), cuda::f32(lse), cuda::bf(q), cuda::bf(k),
                                                               cuda::bf(v), cuda::i32(cu), d, 1.0f / sqrtf(float(d.D)));
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaKernels::attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& cu_seqlens, int max_seqlen) {
  const char* op = "attention_forward";
  const Dims d = check_dims(op, q, k, v, cu_seqlens, max_seqlen);
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "lse", lse, DType::F32);
  cuda::check_shape(op, "out", out, q.shape());
  cuda::check_shape(op, "lse", lse, {int64_t(d.N), int64_t(d.H)});
  if (d.N == 0) return;
  int var = cuda::attention_variant(cuda::AttnPass::Forward);
  if ((var == 0 || var == 3) &&
      cuda::cudnn_attn::forward(*this, out, lse, q, k, v, cu_seqlens, d, max_seqlen)) {
    cuda::note_attention_variant(cuda::AttnPass::Forward, 3);
    return;
  }
  if (var == 3) var = 0;  // cuDNN cannot run this shape: the automatic choice below
  const bool aligned = aligned16({&out, &q, &k, &v});
  int ran = 1;
  if (aligned && (d.D == 128 || d.D == 64) && (var == 2 || (var == 0 && d.D == 128))) {
    cuda::attn::flash_forward_v2(stream_, out, lse, q, k, v, cu_seqlens, d);
    ran = 2;
  } else if (aligned && d.D == 128)
    launch_flash_forward<128>(stream_, out, lse, q, k, v, cu_seqlens, d);
  else if (aligned && d.D == 64)
    launch_flash_forward<64>(stream_, out, lse, q, k, v, cu_seqlens, d);
  else if (d.D <= 64)
    launch_scalar_forward<8>(stream_, out, lse, q, k, v, cu_seqlens, d);
  else
    launch_scalar_forward<16>(stream_, out, lse, q, k, v, cu_seqlens, d);
  cuda::note_attention_variant(cuda::AttnPass::Forward, ran);
}

}  // namespace temper
