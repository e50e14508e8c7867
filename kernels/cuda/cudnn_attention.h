// Attention variant v3: cuDNN's fused flash attention (cuDNN 9, C backend graph
// API, cudnn_backend.h) for attention_forward / attention_backward.
//
// The graphs are the SDPA operation graphs cuDNN's attention engines recognise:
// forward  S = scale Q K^T, padding mask (per-document lengths), causal mask,
//          softmax with its log-sum-exp written out (our lse), O = P V;
// backward dV = P^T dO, dP = dO V^T, dS = scale P (dP - rowsum(dO * O)),
//          dK = dS^T Q, dQ = dS K (f32 accumulator in the workspace).
// Packed documents (cu_seqlens) are cuDNN's ragged "THD" layout: every tensor
// [N, heads, D] gets a ragged offset tensor (cu * heads * D, elements) and the
// documents' lengths; batch = documents, rounded up to a power of two (the
// extra documents are empty) and the sequence dimension = max_seqlen rounded up
// to a power of two (>= 64), so a training run builds a handful of graphs. GQA
// is native (K/V with fewer heads; dK/dV summed over the group). lse is the
// f32 stats tensor [N, H] (natural log), ragged as well.
// Dense graph (default since 2026-12-04, TEMPER_CUDNN_DENSE=0 turns it off): a
// batch of ONE document whose length is a multiple of 128 runs a dense graph
// (batch 1, sequence = N, no lengths or offsets: the graph PyTorch's SDPA
// builds; on the H200 its forward ran 1.19x / 1.26x the ragged graph at 4K, D
// 128 / 64, and test_cuda_attention passed on it); if cuDNN refuses it (plan or
// execution) the ragged graph runs.
// Deterministic backward plans whose workspace (length^2) passes the guard below
// give way to the nondeterministic plan (dQ by f32 atomics), said once per shape.
//
// Graphs are built on first use of a shape (H, KVH, D, padded batch, padded
// length), the execution plan taken from cuDNN's heuristics (mode A, first
// config that finalises), and cached for the process; the workspace comes from
// the caching allocator. Callers must pass max_seqlen >= the longest document
// (Batch does). Only D = 64 / 128, bf16, 16-byte aligned tensors; anything
// cuDNN refuses returns false and the caller runs the v2 / v1 kernels. With
// GQA the backward workspace grows with documents x longest document (cuDNN
// keeps per-query-head dK/dV at the padded shape); a backward needing more than
// TEMPER_CUDNN_MAX_WORKSPACE_MB (default 2048) runs the v2 kernels instead.
// With CudaKernels::deterministic() (run.deterministic, the default) the
// backward graph writes dQ = dS K straight into dQ instead of through the f32
// accumulator cuDNN adds to with atomics, and engines noted NONDETERMINISTIC
// are skipped: bitwise the same gradients from run to run.
// Built only when CMake found cuDNN (TEMPER_HAVE_CUDNN); otherwise every call
// returns false.
#pragma once

#include "kernels/cuda/attention_common.h"

namespace temper {
class CudaKernels;
}

namespace temper::cuda::cudnn_attn {

// True when this build links cuDNN and a handle could be created on the current device.
bool available();

// out, lse as in Kernels::attention_forward. False (nothing written) when cuDNN
// cannot run this shape; the reason is printed once per shape to stderr.
bool forward(CudaKernels& g, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
             const Tensor& cu, const attn::Dims& d, int max_seqlen);

// dq, dk, dv as in Kernels::attention_backward (overwritten).
bool backward(CudaKernels& g, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
              const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu,
              const attn::Dims& d, int max_seqlen);

}  // namespace temper::cuda::cudnn_attn
