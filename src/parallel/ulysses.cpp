// DeepSpeed-Ulysses: all-to-all layout changes around the attention core (see ulysses.h).
#include "parallel/ulysses.h"

#include <algorithm>
#include <array>
#include <numeric>

#include "core/error.h"
#include "model/differential_attention.h"

namespace temper {

Ulysses::Ulysses(Comm& sp, const ModelConfig& cfg)
    : comm_(sp), P_(sp.size()), r_(sp.rank()), H_(cfg.n_heads), G_(cfg.n_noise_heads), KVH_(cfg.n_kv_heads),
      D_(cfg.head_dim) {
  TEMPER_CHECK(P_ >= 1 && H_ > 0 && KVH_ > 0 && H_ % KVH_ == 0, "Ulysses: bad head counts: n_heads ", H_,
               ", n_kv_heads ", KVH_, ", sp ", P_);
  if (cfg.differential()) {
    TEMPER_CHECK(H_ % P_ == 0 && G_ % P_ == 0, "parallel.sp = ", P_, " does not divide the model's ", H_,
                 " signal heads and ", G_, " noise-control heads: Ulysses sequence parallelism gives every SP rank "
                 "whole groups (n_heads / sp signal heads with their n_noise_heads / sp noise-control heads); "
                 "choose parallel.sp among the common divisors of ", H_, " and ", G_);
  } else {
    TEMPER_CHECK(H_ % P_ == 0, "parallel.sp = ", P_, " does not divide the model's n_heads = ", H_,
                 ": Ulysses sequence parallelism gives every SP rank n_heads / sp whole attention heads; "
                 "choose parallel.sp among the divisors of n_heads");
  }
  const int64_t kvx = std::lcm(KVH_, int64_t(P_));  // divides H (and G): multiples of KVH and of P
  e_ = int(kvx / KVH_);
  Hl_ = H_ / P_;
  Gl_ = G_ / P_;
  KVl_ = kvx / P_;
}

int64_t Ulysses::scratch_bytes(const ModelConfig& cfg, int64_t n_local, int sp, DType act) {
  const int64_t kvx = std::lcm(int64_t(cfg.n_kv_heads), int64_t(sp));
  const int64_t H = cfg.n_heads, G = cfg.n_noise_heads, D = cfg.head_dim, sz = int64_t(dtype_size(act));
  if (!cfg.differential()) return n_local * D * (5 * H + 4 * kvx) * sz;
  // per local token (n x sp tokens of H / sp heads = n H), in units of D, after a forward + backward:
  //   stage (the largest all-to-all, dout) 2H; q1, dq1 H each; out, dout 2H each; q2, dq2 G each;
  //   k1, k2, v1, v2, dk1, dk2, dv1, dv2 and the dk, dv temporaries kvx each; half, dhalf, dq max(H, G) each
  const int64_t units = 8 * H + 2 * G + 10 * kvx + 3 * std::max(H, G);
  return n_local * D * units * sz;
}

int64_t Ulysses::allocated_bytes() const {
  int64_t b = 0;
  for (const Tensor& t : bufs_) b += t.defined() ? int64_t(t.nbytes()) : 0;
  return b;
}

Tensor Ulysses::buffer(Kernels& k, Slot s, const Shape& shape, DType dt) {
  Tensor& b = bufs_[s];
  const int64_t n = shape_numel(shape);
  if (!b.defined() || b.dtype() != dt || b.numel() < n || b.device() != k.device()) b = k.alloc({n}, dt);
  return b.rows(0, n).reshape(shape);
}

Batch Ulysses::shard(const Batch& whole) {
  const int64_t N = whole.n_tokens;
  TEMPER_CHECK(N > 0 && N % P_ == 0, "Ulysses: a batch of ", N, " tokens does not split evenly over sp = ", P_,
               " ranks (pad it with pad_sequence first)");
  TEMPER_CHECK(!whole.attention, "Ulysses: the batch is already sharded");
  const int64_t n = N / P_, a = r_ * n, z = a + n;
  Batch b = whole;
  b.tokens = whole.tokens.rows(a, z);
  b.targets = whole.targets.rows(a, z);
  b.positions = whole.positions.rows(a, z);
  b.n_tokens = n;
  b.attention = this;
  return b;
}

void Ulysses::seq_to_heads(Kernels& k, Tensor& dst, const Tensor& src, int64_t heads, int replicas) {
  const int64_t n = src.dim(0), h = heads * replicas / P_;
  TEMPER_CHECK(src.ndim() == 3 && src.dim(1) == heads && (heads * replicas) % P_ == 0 && dst.ndim() == 3 &&
                   dst.dim(0) == n * P_ && dst.dim(1) == h && dst.dim(2) == src.dim(2),
               "Ulysses::seq_to_heads: src ", shape_str(src.shape()), " (", heads, " heads x ", replicas,
               " replicas) does not fit dst ", shape_str(dst.shape()), " over sp = ", P_);
  Tensor send = buffer(k, kStage, {P_ * n, h, src.dim(2)}, src.dtype());
  for (int j = 0; j < P_; ++j) {
    Tensor chunk = send.rows(j * n, (j + 1) * n);
    if (replicas == 1) {
      k.copy_heads(chunk, 0, src, j * h, h, false);
    } else {
      for (int64_t l = 0; l < h; ++l) k.copy_heads(chunk, l, src, (j * h + l) / replicas, 1, false);
    }
  }
  comm_.all_to_all(dst, send);
}

void Ulysses::heads_to_seq(Kernels& k, Tensor& dst, const Tensor& src, int64_t heads, int replicas) {
  const int64_t n = dst.dim(0), h = heads * replicas / P_;
  TEMPER_CHECK(dst.ndim() == 3 && dst.dim(1) == heads && (heads * replicas) % P_ == 0 && src.ndim() == 3 &&
                   src.dim(0) == n * P_ && src.dim(1) == h && src.dim(2) == dst.dim(2),
               "Ulysses::heads_to_seq: src ", shape_str(src.shape()), " does not fit dst ", shape_str(dst.shape()),
               " (", heads, " heads x ", replicas, " replicas) over sp = ", P_);
  Tensor recv = buffer(k, kStage, src.shape(), src.dtype());
  comm_.all_to_all(recv, src);
  if (replicas > 1) k.zero(dst);
  for (int i = 0; i < P_; ++i) {
    const Tensor chunk = recv.rows(i * n, (i + 1) * n);
    if (replicas == 1) {
      k.copy_heads(dst, i * h, chunk, 0, h, false);
    } else {
      for (int64_t l = 0; l < h; ++l) k.copy_heads(dst, (i * h + l) / replicas, chunk, l, 1, true);
    }
  }
}

void Ulysses::forward(Kernels& k, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& kk, const Tensor& v,
                      const Batch& b) {
  const int64_t N = q.dim(0) * P_;
  const DType dt = q.dtype();
  Tensor qh = buffer(k, kQ, {N, Hl_, D_}, dt), kh = buffer(k, kK, {N, KVl_, D_}, dt),
         vh = buffer(k, kV, {N, KVl_, D_}, dt), oh = buffer(k, kO, {N, Hl_, D_}, dt);
  seq_to_heads(k, qh, q, H_, 1);
  seq_to_heads(k, kh, kk, KVH_, e_);
  seq_to_heads(k, vh, v, KVH_, e_);
  Tensor lh = lse.reshape({N, Hl_});
  k.attention_forward(oh, lh, qh, kh, vh, b.cu_seqlens, b.max_seqlen);
  heads_to_seq(k, out, oh, H_, 1);
}

void Ulysses::backward(Kernels& k, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                       const Tensor& lse, const Tensor& q, const Tensor& kk, const Tensor& v, const Batch& b) {
  const int64_t N = q.dim(0) * P_;
  const DType dt = q.dtype();
  Tensor qh = buffer(k, kQ, {N, Hl_, D_}, dt), kh = buffer(k, kK, {N, KVl_, D_}, dt),
         vh = buffer(k, kV, {N, KVl_, D_}, dt), oh = buffer(k, kO, {N, Hl_, D_}, dt),
         doh = buffer(k, kDO, {N, Hl_, D_}, dt), dqh = buffer(k, kDQ, {N, Hl_, D_}, dt),
         dkh = buffer(k, kDK, {N, KVl_, D_}, dt), dvh = buffer(k, kDV, {N, KVl_, D_}, dt);
  seq_to_heads(k, qh, q, H_, 1);
  seq_to_heads(k, kh, kk, KVH_, e_);
  seq_to_heads(k, vh, v, KVH_, e_);
  seq_to_heads(k, oh, out, H_, 1);
  seq_to_heads(k, doh, dout, H_, 1);
  k.attention_backward(dqh, dkh, dvh, doh, oh, lse.reshape({N, Hl_}), qh, kh, vh, b.cu_seqlens, b.max_seqlen);
  heads_to_seq(k, dq, dqh, H_, 1);
  heads_to_seq(k, dk, dkh, KVH_, e_);
  heads_to_seq(k, dv, dvh, KVH_, e_);
}

void Ulysses::max_logit(Kernels& k, Tensor& out, const Tensor& q, const Tensor& kk, const Batch& b) {
  const int64_t N = q.dim(0) * P_, Hq = q.dim(1), hl = Hq / P_;
  TEMPER_CHECK(Hq % P_ == 0 && out.numel() == Hq, "Ulysses::max_logit: ", Hq, " query heads over sp = ", P_,
               " into ", out.numel(), " maxima");
  const DType dt = q.dtype();
  Tensor qh = buffer(k, kQ, {N, hl, D_}, dt), kh = buffer(k, kK, {N, KVl_, D_}, dt);
  seq_to_heads(k, qh, q, Hq, 1);
  seq_to_heads(k, kh, kk, KVH_, e_);
  Tensor mine = out.rows(r_ * hl, (r_ + 1) * hl);
  k.attention_max_logit(mine, qh, kh, b.cu_seqlens, b.max_seqlen);
}

std::array<Tensor, 6> Ulysses::core_buffers(Kernels& k, const std::array<Slot, 6>& slots, int64_t N, DType dt) {
  const int64_t heads[6] = {Hl_, Gl_, KVl_, KVl_, KVl_, KVl_};
  std::array<Tensor, 6> t;
  for (int i = 0; i < 6; ++i) t[size_t(i)] = buffer(k, slots[size_t(i)], {N, heads[i], D_}, dt);
  return t;
}

DiffCoreActs Ulysses::diff_inputs_to_heads(Kernels& k, const DiffCoreActs& a) {
  const int64_t N = a.q1.dim(0) * P_;
  DiffCoreActs h;
  const auto t = core_buffers(k, {kQ, kQ2, kK, kK2, kV, kV2}, N, a.q1.dtype());
  Tensor* dst[6] = {&h.q1, &h.q2, &h.k1, &h.k2, &h.v1, &h.v2};
  const Tensor* src[6] = {&a.q1, &a.q2, &a.k1, &a.k2, &a.v1, &a.v2};
  for (int i = 0; i < 6; ++i) {
    *dst[i] = t[size_t(i)];
    seq_to_heads(k, *dst[i], *src[i], i == 0 ? H_ : i == 1 ? G_ : KVH_, i < 2 ? 1 : e_);
  }
  // the kept tensors: this rank's heads over the whole sequence, in the caller's storage
  h.sig = a.sig.reshape({N, Hl_, 2 * D_});
  h.noise = a.noise.reshape({N, Gl_, 2 * D_});
  h.lse1 = a.lse1.reshape({N, Hl_});
  h.lse2 = a.lse2.reshape({N, Gl_});
  h.rstd = a.rstd.reshape({N, Hl_});
  return h;
}

void Ulysses::diff_forward(Kernels& k, DiffCoreActs& a, const DiffCoreParams& p, const Batch& b) {
  const int64_t N = a.q1.dim(0) * P_;
  const DType dt = a.q1.dtype();
  DiffCoreActs h = diff_inputs_to_heads(k, a);
  h.out = buffer(k, kO, {N, Hl_, 2 * D_}, dt);
  Tensor half = buffer(k, kHalf, {N, std::max(Hl_, Gl_), D_}, dt);
  diff_core_forward(k, h, p, b.cu_seqlens, b.max_seqlen, half);
  heads_to_seq(k, a.out, h.out, H_, 1);
}

void Ulysses::diff_backward(Kernels& k, DiffCoreGrads& g, const DiffCoreActs& a, const DiffCoreParams& p,
                            const Batch& b) {
  const int64_t N = a.q1.dim(0) * P_, HG = std::max(Hl_, Gl_);
  const DType dt = a.q1.dtype();
  DiffCoreActs h = diff_inputs_to_heads(k, a);
  DiffCoreGrads gh;
  gh.dout = buffer(k, kDO, {N, Hl_, 2 * D_}, dt);
  seq_to_heads(k, gh.dout, g.dout, H_, 1);
  const auto t6 = core_buffers(k, {kDQ, kDQ2, kDK, kDK2, kDV, kDV2}, N, dt);
  Tensor* dh[6] = {&gh.dq1, &gh.dq2, &gh.dk1, &gh.dk2, &gh.dv1, &gh.dv2};
  for (int i = 0; i < 6; ++i) *dh[i] = t6[size_t(i)];
  gh.dsig = g.dsig.reshape({N, Hl_, 2 * D_});  // the caller's scratch, same element count
  gh.dnoise = g.dnoise.reshape({N, Gl_, 2 * D_});
  DiffCoreTemps t{buffer(k, kHalf, {N, HG, D_}, dt), buffer(k, kDHalf, {N, HG, D_}, dt),
                  buffer(k, kTQ, {N, HG, D_}, dt), buffer(k, kTK, {N, KVl_, D_}, dt),
                  buffer(k, kTV, {N, KVl_, D_}, dt)};
  diff_core_backward(k, gh, h, p, b.cu_seqlens, b.max_seqlen, t);
  Tensor* ds[6] = {&g.dq1, &g.dq2, &g.dk1, &g.dk2, &g.dv1, &g.dv2};
  for (int i = 0; i < 6; ++i) heads_to_seq(k, *ds[i], *dh[i], i == 0 ? H_ : i == 1 ? G_ : KVH_, i < 2 ? 1 : e_);
}

int64_t pad_sequence(std::vector<int32_t>& tokens, std::vector<int32_t>& targets, std::vector<int32_t>& positions,
                     std::vector<int32_t>& cu_seqlens, int multiple) {
  TEMPER_CHECK(multiple >= 1, "pad_sequence: multiple must be >= 1, got ", multiple);
  const int64_t n = int64_t(tokens.size()), pad = (multiple - n % multiple) % multiple;
  for (int64_t i = 0; i < pad; ++i) {
    tokens.push_back(0);
    targets.push_back(-1);
    positions.push_back(int32_t(i));
  }
  if (pad > 0) cu_seqlens.push_back(int32_t(n + pad));
  return pad;
}

}  // namespace temper
