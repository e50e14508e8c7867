// CUDA backend: causal varlen grouped-query attention, backward, as in
// flash-attention 2 but without atomics (see attention_common.h for tiling):
//   delta_i = dout_i . out_i                               (delta kernel, f32)
//   p_ij = exp(scale q_i.k_j - lse_i),  ds_ij = p_ij (dout_i.v_j - delta_i)
//   dq kernel,   one block per (query tile, head):    dq_i = scale sum_j ds_ij k_j
//   dk/dv kernel, one block per (key tile, kv head), looping over the group's
//   query heads and the queries at or after the tile in its documents:
//                dk_j = scale sum_i ds_ij q_i,  dv_j = sum_i p_ij dout_i
// Scores are recomputed in both kernels; all sums are f32.
#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

using namespace cuda::attn;

constexpr int kPad = kTile + 1;  // row stride of the [kTile x kTile] score tiles

// delta[i, h] = sum_d dout * out, one warp per (token, head).
__global__ void attention_delta_kernel(float* delta, const __nv_bfloat16* dout, const __nv_bfloat16* out, int64_t rows,
                                       int D) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  float s = 0.0f;
  for (int c = lane; c < D; c += 32) s += __bfloat162float(dout[row * D + c]) * __bfloat162float(out[row * D + c]);
  s = cuda::warp_sum(s);
  if (lane == 0) delta[row] = s;
}

template <int NACC>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(__nv_bfloat16* dq, const __nv_bfloat16* dout, const float* lse, const float* delta,
                        const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const int32_t* cu,
                        Dims dm, float scale) {
  extern __shared__ float smem[];
  const int D = dm.D, ld = D + 1;
  float* Qs = smem;             // [kTile][ld]
  float* Gs = Qs + kTile * ld;  // dout tile
  float* Ks = Gs + kTile * ld;
  float* Vs = Ks + kTile * ld;
  float* dS = Vs + kTile * ld;  // [kTile][kPad]
  __shared__ int row_begin[kTile];

  const int q0 = blockIdx.x * kTile, h = blockIdx.y, g = h / (dm.H / dm.KVH);
  const int r = threadIdx.x >> 3, sub = threadIdx.x & 7;
  const int i = q0 + r;

  load_tile(Qs, q, q0, dm.N, dm.H, h, D);
  load_tile(Gs, dout, q0, dm.N, dm.H, h, D);
  if (threadIdx.x < kTile) {
    const int ii = q0 + threadIdx.x;
    row_begin[threadIdx.x] = ii < dm.N ? cu[doc_of(cu, dm.S, ii)] : 0x7fffffff;
  }
  __syncthreads();
  const int kv_lo = row_begin[0], kv_hi = min(q0 + kTile, dm.N);
  const int my_begin = row_begin[r];
  const float my_lse = i < dm.N ? lse[int64_t(i) * dm.H + h] : 0.0f;
  const float my_delta = i < dm.N ? delta[int64_t(i) * dm.H + h] : 0.0f;

  float acc[NACC];
#pragma unroll
  for (int a = 0; a < NACC; ++a) acc[a] = 0.0f;

  for (int k0 = kv_lo; k0 < kv_hi; k0 += kTile) {
    __syncthreads();
    load_tile(Ks, k, k0, dm.N, dm.KVH, g, D);
    load_tile(Vs, v, k0, dm.N, dm.KVH, g, D);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const int c = sub + 8 * kk, j = k0 + c;
      float ds = 0.0f;
      if (i < dm.N && j <= i && j >= my_begin) {
        const float p = expf(scale * dot_rows(Qs + r * ld, Ks + c * ld, D) - my_lse);
        ds = p * (dot_rows(Gs + r * ld, Vs + c * ld, D) - my_delta);
      }
      dS[r * kPad + c] = ds;
    }
    __syncwarp();
    for (int c = 0; c < kTile; ++c) {
      const float w = dS[r * kPad + c];
      if (w == 0.0f) continue;
#pragma unroll
      for (int a = 0; a < NACC; ++a) {
        const int d = sub + 8 * a;
        if (d < D) acc[a] = fmaf(w, Ks[c * ld + d], acc[a]);
      }
    }
  }
  if (i < dm.N) {
    __nv_bfloat16* o = dq + (int64_t(i) * dm.H + h) * D;
#pragma unroll
    for (int a = 0; a < NACC; ++a) {
      const int d = sub + 8 * a;
      if (d < D) o[d] = __float2bfloat16_rn(scale * acc[a]);
    }
  }
}

template <int NACC>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(__nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* dout, const float* lse,
                          const float* delta, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                          const int32_t* cu, Dims dm, float scale) {
  extern __shared__ float smem[];
  const int D = dm.D, ld = D + 1;
  float* Ks = smem;
  float* Vs = Ks + kTile * ld;
  float* Qs = Vs + kTile * ld;
  float* Gs = Qs + kTile * ld;
  float* Ps = Gs + kTile * ld;    // [query row][key] = p
  float* dS = Ps + kTile * kPad;  // [query row][key] = ds
  __shared__ int row_begin[kTile];
  __shared__ float row_lse[kTile], row_delta[kTile];

  const int k0 = blockIdx.x * kTile, g = blockIdx.y, group = dm.H / dm.KVH;
  const int r = threadIdx.x >> 3, sub = threadIdx.x & 7;  // r: query row (scores) or key row (accumulators)
  const int last_key = min(k0 + kTile, dm.N) - 1;
  const int q_hi = cu[doc_of(cu, dm.S, last_key) + 1];  // queries past the tile's last document see none of it

  load_tile(Ks, k, k0, dm.N, dm.KVH, g, D);
  load_tile(Vs, v, k0, dm.N, dm.KVH, g, D);

  float acc_k[NACC], acc_v[NACC];
#pragma unroll
  for (int a = 0; a < NACC; ++a) acc_k[a] = acc_v[a] = 0.0f;

  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (int q0 = k0; q0 < q_hi && q0 < dm.N; q0 += kTile) {
      __syncthreads();  // previous readers of Qs/Gs/Ps/dS are done
      load_tile(Qs, q, q0, dm.N, dm.H, h, D);
      load_tile(Gs, dout, q0, dm.N, dm.H, h, D);
      if (threadIdx.x < kTile) {
        const int ii = q0 + threadIdx.x;
        const bool ok = ii < dm.N;
        row_begin[threadIdx.x] = ok ? cu[doc_of(cu, dm.S, ii)] : 0x7fffffff;
        row_lse[threadIdx.x] = ok ? lse[int64_t(ii) * dm.H + h] : 0.0f;
        row_delta[threadIdx.x] = ok ? delta[int64_t(ii) * dm.H + h] : 0.0f;
      }
      __syncthreads();
      const int i = q0 + r;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const int c = sub + 8 * kk, j = k0 + c;
        float p = 0.0f, ds = 0.0f;
        if (i < dm.N && j <= i && j >= row_begin[r]) {
          p = expf(scale * dot_rows(Qs + r * ld, Ks + c * ld, D) - row_lse[r]);
          ds = p * (dot_rows(Gs + r * ld, Vs + c * ld, D) - row_delta[r]);
        }
        Ps[r * kPad + c] = p;
        dS[r * kPad + c] = ds;
      }
      __syncthreads();
      // accumulators: key row r of the tile, columns sub + 8a
      for (int rq = 0; rq < kTile; ++rq) {
        const float p = Ps[rq * kPad + r], ds = dS[rq * kPad + r];
        if (p == 0.0f && ds == 0.0f) continue;
#pragma unroll
        for (int a = 0; a < NACC; ++a) {
          const int d = sub + 8 * a;
          if (d < D) {
            acc_v[a] = fmaf(p, Gs[rq * ld + d], acc_v[a]);
            acc_k[a] = fmaf(ds, Qs[rq * ld + d], acc_k[a]);
          }
        }
      }
    }
  }
  const int j = k0 + r;
  if (j < dm.N) {
    const int64_t base = (int64_t(j) * dm.KVH + g) * D;
#pragma unroll
    for (int a = 0; a < NACC; ++a) {
      const int d = sub + 8 * a;
      if (d < D) {
        dk[base + d] = __float2bfloat16_rn(scale * acc_k[a]);
        dv[base + d] = __float2bfloat16_rn(acc_v[a]);
      }
    }
  }
}

template <int NACC>
void launch_backward(cudaStream_t stream, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& lse,
                     const Tensor& delta, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu,
                     const Dims& d) {
  const float scale = 1.0f / sqrtf(float(d.D));
  const size_t tile = size_t(kTile) * (d.D + 1), score = size_t(kTile) * kPad;
  const size_t smem_dq = (4 * tile + score) * sizeof(float);
  set_smem(attention_dq_kernel<NACC>, smem_dq);
  attention_dq_kernel<NACC><<<dim3((d.N + kTile - 1) / kTile, d.H), kThreads, smem_dq, stream>>>(
      cuda::bf(dq), cuda::bf(dout), cuda::f32(lse), cuda::f32(delta), cuda::bf(q), cuda::bf(k), cuda::bf(v),
      cuda::i32(cu), d, scale);
  TEMPER_CUDA_CHECK_LAUNCH();
  const size_t smem_kv = (4 * tile + 2 * score) * sizeof(float);
  set_smem(attention_dkdv_kernel<NACC>, smem_kv);
  attention_dkdv_kernel<NACC><<<dim3((d.N + kTile - 1) / kTile, d.KVH), kThreads, smem_kv, stream>>>(
      cuda::bf(dk), cuda::bf(dv), cuda::bf(dout), cuda::f32(lse), cuda::f32(delta), cuda::bf(q), cuda::bf(k),
      cuda::bf(v), cuda::i32(cu), d, scale);
  TEMPER_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaKernels::attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                                     const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& cu_seqlens, int max_seqlen) {
  const char* op = "attention_backward";
  const Dims d = check_dims(op, q, k, v, cu_seqlens, max_seqlen);
  cuda::check_dtype(op, "dq", dq, DType::BF16);
  cuda::check_dtype(op, "dk", dk, DType::BF16);
  cuda::check_dtype(op, "dv", dv, DType::BF16);
  cuda::check_dtype(op, "dout", dout, DType::BF16);
  cuda::check_dtype(op, "out", out, DType::BF16);
  cuda::check_dtype(op, "lse", lse, DType::F32);
  cuda::check_shape(op, "dq", dq, q.shape());
  cuda::check_shape(op, "dk", dk, k.shape());
  cuda::check_shape(op, "dv", dv, v.shape());
  cuda::check_shape(op, "dout", dout, q.shape());
  cuda::check_shape(op, "out", out, q.shape());
  cuda::check_shape(op, "lse", lse, {int64_t(d.N), int64_t(d.H)});
  if (d.N == 0) return;
  const int64_t rows = int64_t(d.N) * d.H;
  Tensor delta = alloc({rows}, DType::F32);
  attention_delta_kernel<<<cuda::grid_for(rows, 8, op), 256, 0, stream_>>>(cuda::f32(delta), cuda::bf(dout),
                                                                           cuda::bf(out), rows, d.D);
  TEMPER_CUDA_CHECK_LAUNCH();
  if (d.D <= 64)
    launch_backward<8>(stream_, dq, dk, dv, dout, lse, delta, q, k, v, cu_seqlens, d);
  else
    launch_backward<16>(stream_, dq, dk, dv, dout, lse, delta, q, k, v, cu_seqlens, d);
}

}  // namespace temper
