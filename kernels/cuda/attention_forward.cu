// CUDA backend: causal varlen grouped-query attention, forward. A tiled
// flash-style kernel (see attention_common.h for the tiling): one block per
// (32-query tile, head), online softmax over 32-key tiles in f32, output
// rescaled once at the end; lse (f32, natural log of the scaled scores) is
// kept for the backward pass.
#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

using namespace cuda::attn;

// NACC = accumulators per thread = ceil(D / 8) rounded up to 8 or 16.
template <int NACC>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_kernel(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
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
void launch_forward(cudaStream_t stream, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& cu, const Dims& d) {
  const size_t smem = (size_t(3) * kTile * (d.D + 1) + size_t(kTile) * (kTile + 1)) * sizeof(float);
  set_smem(attention_fwd_kernel<NACC>, smem);
  dim3 grid((d.N + kTile - 1) / kTile, d.H);
  attention_fwd_kernel<NACC><<<grid, kThreads, smem, stream>>>(cuda::bf(out), cuda::f32(lse), cuda::bf(q), cuda::bf(k),
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
  if (d.D <= 64)
    launch_forward<8>(stream_, out, lse, q, k, v, cu_seqlens, d);
  else
    launch_forward<16>(stream_, out, lse, q, k, v, cu_seqlens, d);
}

}  // namespace temper
