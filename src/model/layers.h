// One transformer block (pre-norm attention + SwiGLU MLP) as forward/backward
// sequences of Kernels calls. The Decoder owns the tensors; these structs only
// name them. Every tensor here is a view of N rows of a Decoder buffer.
#pragma once
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/config.h"

namespace temper {

// One trainable tensor. `value` is the master copy (the dtype given to the Decoder),
// `grad` its gradient (f32; f64 when the master is f64), `compute` what the kernels
// read: `value` itself when the dtypes agree (CPU), else a copy in the backend's
// activation dtype refreshed by Decoder::refresh_compute().
struct NamedParam {
  std::string name;
  Tensor value;
  Tensor grad;
  bool decay = true;  // false for norm weights and biases
  Tensor compute;
};

struct BlockWeights {
  NamedParam* attn_norm = nullptr;  // [C]
  NamedParam* q = nullptr;          // [H*D, C]
  NamedParam* k = nullptr;          // [KVH*D, C]
  NamedParam* v = nullptr;          // [KVH*D, C]
  NamedParam* q_bias = nullptr;     // [H*D]   (qkv_bias)
  NamedParam* k_bias = nullptr;     // [KVH*D] (qkv_bias)
  NamedParam* v_bias = nullptr;     // [KVH*D] (qkv_bias)
  NamedParam* q_norm = nullptr;     // [D]     (qk_norm)
  NamedParam* k_norm = nullptr;     // [D]     (qk_norm)
  NamedParam* o = nullptr;          // [C, H*D]
  NamedParam* mlp_norm = nullptr;   // [C]
  NamedParam* gate_up = nullptr;    // [2F, C]: rows [0,F) gate, [F,2F) up
  NamedParam* down = nullptr;       // [C, F]
  // Differential attention (model/differential_attention.h): q is [(H+G)*D, C] in the
  // released head order, k and v [2*KVH*D, C], o [C, 2*H*D]; and
  NamedParam* lambda = nullptr;     // [4, D]     rows lq1, lk1, lq2, lk2
  NamedParam* head_norm = nullptr;  // [2D]       per-head sub-layer RMSNorm weight of the combined output
  double lambda_init = 0.0;         // this layer's fixed lambda_init
  // PolyNorm MLP activation (model/polynorm.h)
  NamedParam* polynorm = nullptr;   // [4] w0, w1, w2, b
};

// Activations a block keeps for its backward (rows = tokens).
struct BlockActs {
  Tensor x_in;          // [N, C] residual stream entering the block
  Tensor ln1, rstd1;    // [N, C], [N]
  Tensor q_pre, q_rstd; // [N, H, D], [N, H]    before the per-head norm (qk_norm only)
  Tensor k_pre, k_rstd; // [N, KVH, D], [N, KVH] (qk_norm only)
  Tensor q, k, v;       // [N, H, D], [N, KVH, D], [N, KVH, D]: q, k after RoPE
  Tensor attn, lse;     // [N, H, D], [N, H]
  Tensor x_mid;         // [N, C] after the attention residual
  Tensor ln2, rstd2;    // [N, C], [N]
  Tensor gu, act;       // [N, 2F], [N, F]
  Tensor x_out;         // [N, C] residual stream leaving the block (next block's x_in)
  // differential attention only (model/differential_attention.h): q, k, v above are the
  // signal queries Q1 [N, H, D], signal keys K1 and first value halves V1 [N, KVH, D];
  // attn is the combined, normed output [N, H, 2D] (the o projection's input)
  Tensor q2, k2, v2;           // [N, G, D], [N, KVH, D], [N, KVH, D] (q2, k2 after RoPE)
  Tensor attn_sig, attn_noise; // [N, H, 2D] softmax(Q1K1^T)[V1|V2] (lse in lse), [N, G, 2D] with Q2, K2
  Tensor lse2, head_rstd;     // [N, G], [N, H]
  Tensor proj, half;          // shared by all blocks: the q|k|v projection [N, (H+G+4KVH) D] before the
                              // head split, and one D-wide attention output [N, max(H,G), D]
  Tensor act_rstd;            // [N, 3] PolyNorm only
};

// Gradient scratch shared by all blocks.
struct BlockScratch {
  Tensor dln;     // [N, C]
  Tensor dq;      // [N, H, D]
  Tensor dk, dv;  // [N, KVH, D]
  Tensor dattn;   // [N, H, D] (also dq before the per-head norm)
  Tensor dk_pre;  // [N, KVH, D] (qk_norm only)
  Tensor dgu;     // [N, 2F]
  Tensor dact;    // [N, F]
  // differential attention only (dattn is [N, H, 2D])
  Tensor da_sig, da_noise;  // [N, H, 2D], [N, G, 2D]
  Tensor dq2;               // [N, G, D]
  Tensor dk2, dv2;          // [N, KVH, D]
  Tensor t_dout, t_dq;      // [N, max(H,G), D] attention-half temporaries
  Tensor t_dk, t_dv;        // [N, KVH, D]
};

// The differential attention core's tensors (model/differential_attention.h), in one layout of
// T tokens: h signal, g noise-control, kv key/value heads of dimension D.
struct DiffCoreActs {
  Tensor q1, q2, k1, k2, v1, v2;  // [T,h,D], [T,g,D], [T,kv,D] x 4 (queries and keys after RoPE)
  Tensor sig, noise;              // [T,h,2D], [T,g,2D]: softmax(Q K^T / sqrt(D)) [V1 | V2]
  Tensor lse1, lse2;              // [T,h], [T,g]
  Tensor rstd;                    // [T,h] of the sub-layer norm
  Tensor out;                     // [T,h,2D] the combined output
};
// Its gradients: dout in, d{q,k,v}{1,2} out (overwritten), dsig / dnoise scratch.
struct DiffCoreGrads {
  Tensor dout;                             // [T,h,2D]
  Tensor dq1, dq2, dk1, dk2, dv1, dv2;     // as q1 .. v2
  Tensor dsig, dnoise;                     // [T,h,2D], [T,g,2D] scratch
};
// The layer's combination parameters and where their gradients accumulate.
struct DiffCoreParams {
  const Tensor* lambda;  // [4, D]
  const Tensor* weight;  // [2D] sub-layer norm
  Tensor* dlambda;       // accumulated by backward (null in forward-only use)
  Tensor* dweight;
  double lambda_init;
  float eps;
};

// The attention core of a block (q, k after RoPE -> attn, before the o projection), when
// it is not the local k.attention_forward/backward: parallel/ulysses runs it over an SP
// group. It reaches the blocks through Batch::attention. Tensors as in BlockActs
// (lse: the layout the implementation documents, same element count).
class AttentionCore {
 public:
  virtual ~AttentionCore() = default;
  virtual int seq_parallel() const = 0;  // ranks sharing the sequence (global tokens = n * this)
  virtual void forward(Kernels& k, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& kk, const Tensor& v,
                       const Batch& b) = 0;
  virtual void backward(Kernels& k, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                        const Tensor& lse, const Tensor& q, const Tensor& kk, const Tensor& v, const Batch& b) = 0;
  // QK-clip: out[h] = max(out[h], largest logit of query head h) over the whole sequence, for
  // q [N, Hq, D] against kk [N, KVH, D] (GQA); out [Hq] of the stat dtype. An implementation
  // that splits heads over ranks may leave other ranks' heads untouched (the caller reduces max).
  virtual void max_logit(Kernels& k, Tensor& out, const Tensor& q, const Tensor& kk, const Batch& b) = 0;
  // The differential attention core (model/differential_attention.h): a.q1 .. a.v2 and a.out in
  // the caller's token layout; a.sig, a.noise, a.lse1, a.lse2, a.rstd kept in the implementation's
  // own layout (same element counts).
  virtual void diff_forward(Kernels& k, DiffCoreActs& a, const DiffCoreParams& p, const Batch& b) = 0;
  virtual void diff_backward(Kernels& k, DiffCoreGrads& g, const DiffCoreActs& a, const DiffCoreParams& p,
                             const Batch& b) = 0;
};

void block_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a, const Batch& b);

// The attention core of block_forward: a.attn, a.lse from the post-RoPE a.q, a.k, a.v
// (also what selective checkpointing recomputes in backward).
void attention_core_forward(Kernels& k, BlockActs& a, const Batch& b);

// dres holds dL/dx_out on entry and dL/dx_in on exit; weight gradients accumulate.
void block_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                    BlockScratch& s, Tensor& dres, const Batch& b);

// The standard (GQA) attention part of a block: ln1 -> q, k, v (+ bias, qk_norm,
// RoPE) -> attn/lse; and its backward from s.dattn (dL/d attn) to s.dln (dL/d ln1,
// overwritten), weight gradients accumulating. s.dattn may be overwritten.
void standard_attention_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a,
                                const Batch& b);
void standard_attention_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                                 BlockScratch& s, const Batch& b);

// The first n rows of every defined tensor (views).
BlockActs first_rows(const BlockActs& a, int64_t n);
BlockScratch first_rows(const BlockScratch& s, int64_t n);

}  // namespace temper
