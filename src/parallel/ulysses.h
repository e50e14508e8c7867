// DeepSpeed-Ulysses sequence parallelism (Jacobs et al. 2023) over the SP communicator.
//
// The P ranks of an SP group share one packed sequence of N tokens (N % P == 0; pad_sequence
// makes it so): rank r holds the n = N / P consecutive tokens [r n, (r+1) n) through every
// token-wise layer (embedding, norms, projections, RoPE at each token's global-sequence
// position, MLP, output head and loss). Only the attention core needs other ranks' tokens;
// around it two all-to-alls trade the sequence split for a head split, so attention runs on
// the whole sequence (global cu_seqlens: packed documents may cross shard boundaries) for
// 1/P of the heads.
//
// Heads. H query heads, Hl = H / P per rank (H % P == 0 is required): rank r owns query
// heads [r Hl, (r+1) Hl). KV heads are replicated to KVHx = lcm(KVH, P) "virtual" kv heads,
// e = KVHx / KVH copies of each: virtual head u is a copy of kv head u / e (e = 1 when P
// divides KVH). KVl = KVHx / P per rank: rank r owns virtual heads [r KVl, (r+1) KVl), which
// are exactly the kv heads its query heads use (query head h -> virtual h / (H / KVHx) ->
// kv head h / (H / KVH)); H is a multiple of KVH and of P, so of KVHx.
//
// Data layout of the all-to-alls (Comm::all_to_all: chunk j of `in` goes to rank j, chunk i
// of `out` came from rank i; every tensor row-major, rank r's view):
//   seq_to_heads  x [n, Hx, D] (Hx = H for q / dout, KVH for k / v; h = heads per rank):
//     send [P, n, h, D]:  send[j, t, l, :] = x[t, head of virtual head j h + l, :]
//     recv [P, n, h, D] = [N, h, D]: recv[i, t] = rank i's token t = global token i n + t,
//     i.e. the whole sequence in global order, this rank's heads (no unpacking needed).
//   heads_to_seq  y [N, h, D] -> x [n, Hx, D]:
//     send = y viewed as [P, n, h, D] (chunk j = the tokens rank j holds)
//     recv [P, n, h, D]: recv[i, t, l] = rank i's head l at this rank's token t
//     x[t, i h + l, :] = recv[i, t, l, :]; for kv gradients with e > 1 the copies are summed:
//     dx[t, u / e, :] += recv[i, t, l, :] with u = i KVl + l.
// Forward: q, k, v seq_to_heads; attention_forward(out_h, lse_h, ...) on [N, Hl|KVl, D];
// out heads_to_seq. lse is kept head-sharded: BlockActs::lse ([n, H], n H = N Hl elements)
// holds lse_h [N, Hl]. Backward: q, k, v and out go seq_to_heads again (recomputed rather
// than kept per layer), dout seq_to_heads, attention_backward, then dq, dk, dv heads_to_seq
// (replica gradients summed). Per block: 4 all-to-alls forward, 8 backward.
//
// Differential attention (model/differential_attention.h): Q1 (H heads), Q2 (G heads) and
// K1, K2, V1, V2 (KVH heads, replicated as above) go seq_to_heads; the whole core (the four
// attention calls and the combination with lambda and the sub-layer norm) runs on rank r's
// heads: signal heads [r H/P, (r+1) H/P) and noise heads [r G/P, (r+1) G/P), exactly the noise
// heads of those signal heads (h / (H/G)), with the kv heads both use. P must divide H and G.
// The combined output [N, H/P, 2D] goes heads_to_seq; A1, A2, lse, lse2 and the norm's rstd
// stay head-sharded in BlockActs. Per block: 7 all-to-alls forward, 13 backward (q1 .. v2 and
// dout seq_to_heads, d{q,k,v}{1,2} back). lambda and the norm weight get this rank's heads'
// share of their gradient, summed over the SP group like every parameter gradient.
// QK-clip (max_logit): q and k go seq_to_heads; this rank's heads' maxima land in its slice
// of the [H] (or [G]) output, the other entries stay as they were (reduce max over the group).
//
// Parameter gradients of each rank cover its own tokens only: sum them over the SP group
// (then over DP) after backward. Loss coefficients use the GLOBAL loss-token count.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "model/batch.h"
#include "model/config.h"
#include "model/layers.h"
#include "parallel/comm.h"

namespace temper {

class Ulysses final : public AttentionCore {
 public:
  // Throws (naming parallel.sp and the head counts) unless sp.size() divides n_heads (and
  // n_noise_heads with differential attention).
  Ulysses(Comm& sp, const ModelConfig& cfg);

  int size() const { return P_; }
  int rank() const { return r_; }
  int kv_replicas() const { return e_; }     // e
  int64_t local_heads() const { return Hl_; }     // Hl
  int64_t local_kv_heads() const { return KVl_; }  // KVl (virtual kv heads per rank)

  // This rank's share of a whole (padded) batch: tokens/targets/positions become views of
  // rows [r n, (r+1) n); cu_seqlens, max_seqlen stay global; attention = this. Throws
  // unless n_tokens % P == 0. The returned batch shares the global batch's storage.
  Batch shard(const Batch& whole);

  // Layout changes (see above); `heads` = Hx, the head count of the sequence-layout side,
  // `replicas` = e for k / v (1 for q / out). Collective over the SP group.
  void seq_to_heads(Kernels& k, Tensor& dst, const Tensor& src, int64_t heads, int replicas);
  void heads_to_seq(Kernels& k, Tensor& dst, const Tensor& src, int64_t heads, int replicas);

  // Bytes of the scratch buffers (reused by every block) for n_local tokens per rank of
  // activation dtype `act`: n D (5 H + 4 KVHx) elements (staging, q, out, dout, dq at
  // n H D each; k, v, dk, dv at n KVHx D each); differential attention adds the noise
  // path and the core's temporaries (see the .cpp). allocated_bytes() is what is held now.
  static int64_t scratch_bytes(const ModelConfig& cfg, int64_t n_local, int sp, DType act);
  int64_t allocated_bytes() const;

  int seq_parallel() const override { return P_; }
  void forward(Kernels& k, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& kk, const Tensor& v,
               const Batch& b) override;
  void backward(Kernels& k, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                const Tensor& lse, const Tensor& q, const Tensor& kk, const Tensor& v, const Batch& b) override;
  void max_logit(Kernels& k, Tensor& out, const Tensor& q, const Tensor& kk, const Batch& b) override;
  void diff_forward(Kernels& k, DiffCoreActs& a, const DiffCoreParams& p, const Batch& b) override;
  void diff_backward(Kernels& k, DiffCoreGrads& g, const DiffCoreActs& a, const DiffCoreParams& p,
                     const Batch& b) override;

 private:
  enum Slot { kStage, kQ, kK, kV, kO, kDO, kDQ, kDK, kDV,                 // standard (q: signal queries)
              kQ2, kK2, kV2, kDQ2, kDK2, kDV2, kHalf, kDHalf, kTQ, kTK, kTV,  // differential attention
              kSlots };
  Tensor buffer(Kernels& k, Slot s, const Shape& shape, DType dt);  // reused scratch
  // q1 .. v2 of the caller's layout to this rank's heads (6 all-to-alls).
  DiffCoreActs diff_inputs_to_heads(Kernels& k, const DiffCoreActs& a);
  // Scratch shaped like this rank's q1, q2, k1, k2, v1, v2 over N tokens, in the given slots.
  std::array<Tensor, 6> core_buffers(Kernels& k, const std::array<Slot, 6>& slots, int64_t N, DType dt);
  Comm& comm_;
  int P_ = 1, r_ = 0, e_ = 1;
  int64_t H_ = 0, G_ = 0, KVH_ = 0, D_ = 0, Hl_ = 0, Gl_ = 0, KVl_ = 0;
  Tensor bufs_[kSlots];
};

// Appends padding so the sequence length is a multiple of `multiple`: pad tokens (id 0,
// target -1, positions 0, 1, ...) form one extra document at the end, so they attend
// only to each other and carry no loss. Returns the number of pad tokens added.
int64_t pad_sequence(std::vector<int32_t>& tokens, std::vector<int32_t>& targets, std::vector<int32_t>& positions,
                     std::vector<int32_t>& cu_seqlens, int multiple);

}  // namespace temper
