// Kokkos backend: exact causal attention within documents, grouped-query (the
// semantics of kernels/cpu/attention.cpp). For query i, head h (kv head
// g = h / (H / KVH)) and the tokens j <= i of i's document:
//   s_ij = q_i . k_j / sqrt(D),  lse_i = log sum_j exp(s_ij),  out_i = sum_j exp(s_ij - lse_i) v_j
// Forward: one team per (query, head), a single pass with the online softmax
// (running max and sum, the output accumulator in team scratch). Backward, as in
// flash-attention, from the stored lse: delta_i = dout_i . out_i, then dq with one
// team per (query, head) and dk, dv with one team per (key, kv head) over its
// query heads and the later queries of its document, so no two teams write one
// element and no atomics are needed. Dot products and sums in double.
// cu_seqlens is validated on the host (a small copy), and each token's document
// bounds are uploaded once per call.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace {

using Scratch = Kokkos::View<double*, kk::Exec::scratch_memory_space, kk::Unmanaged>;

struct AttnDims {
  int64_t N, H, KVH, D, group;
  Tensor doc_begin, doc_end;  // i32[N] on the device: each token's document [begin, end)
};

AttnDims attention_dims(Kernels& kb, const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& cu_seqlens, int max_seqlen) {
  TEMPER_CHECK(q.ndim() == 3, op, ": 'q' must be [N, H, D], got ", shape_str(q.shape()));
  AttnDims d;
  d.N = q.dim(0);
  d.H = q.dim(1);
  d.D = q.dim(2);
  TEMPER_CHECK(k.ndim() == 3 && k.dim(0) == d.N && k.dim(2) == d.D, op, ": 'k' has shape ", shape_str(k.shape()),
               ", expected [", d.N, ", KVH, ", d.D, "] to match 'q' ", shape_str(q.shape()));
  d.KVH = k.dim(1);
  check_shape(op, "v", v, k.shape());
  TEMPER_CHECK(d.KVH > 0 && d.H % d.KVH == 0, op, ": query heads H = ", d.H,
               " must be a multiple of kv heads KVH = ", d.KVH);
  TEMPER_CHECK(d.D > 0, op, ": head dimension must be positive");
  d.group = d.H / d.KVH;
  TEMPER_CHECK(cu_seqlens.numel() >= 1, op, ": 'cu_seqlens' must have S+1 >= 1 elements");
  kk::check_i32(op, "cu_seqlens", cu_seqlens, cu_seqlens.numel());
  Tensor cu_h = Tensor::empty(cu_seqlens.shape(), DType::I32, Device::CPU);
  kb.copy(cu_h, cu_seqlens);
  const int32_t* cu = cu_h.data<int32_t>();
  const int64_t S = cu_seqlens.numel() - 1;
  TEMPER_CHECK(cu[0] == 0 && cu[S] == d.N, op, ": cu_seqlens must start at 0 and end at N = ", d.N, ", got ", cu[0],
               " ... ", cu[S]);
  Tensor b_h = Tensor::empty({d.N}, DType::I32, Device::CPU), e_h = Tensor::empty({d.N}, DType::I32, Device::CPU);
  for (int64_t s = 0; s < S; ++s) {
    TEMPER_CHECK(cu[s + 1] >= cu[s], op, ": cu_seqlens must be non-decreasing, but cu_seqlens[", s, "] = ", cu[s],
                 " > cu_seqlens[", s + 1, "] = ", cu[s + 1]);
    TEMPER_CHECK(cu[s + 1] - cu[s] <= max_seqlen, op, ": document ", s, " has ", cu[s + 1] - cu[s],
                 " tokens, more than max_seqlen = ", max_seqlen);
    for (int64_t t = cu[s]; t < cu[s + 1]; ++t) {
      b_h.data<int32_t>()[t] = cu[s];
      e_h.data<int32_t>()[t] = cu[s + 1];
    }
  }
  d.doc_begin = kb.alloc({d.N}, DType::I32);
  d.doc_end = kb.alloc({d.N}, DType::I32);
  kb.copy(d.doc_begin, b_h);
  kb.copy(d.doc_end, e_h);
  return d;
}

}  // namespace

void KokkosBackend::attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Tensor& cu_seqlens, int max_seqlen) {
  const char* op = "attention_forward";
  kk::check(op, DType::F32, {{"out", &out}, {"lse", &lse}, {"q", &q}, {"k", &k}, {"v", &v}});
  const AttnDims d = attention_dims(*this, op, q, k, v, cu_seqlens, max_seqlen);
  check_shape(op, "out", out, q.shape());
  check_shape(op, "lse", lse, {d.N, d.H});
  if (d.N == 0) return;
  const int64_t D = d.D, H = d.H, KVH = d.KVH, group = d.group;
  const double scale = 1.0 / std::sqrt(double(D));
  auto qv = kk::cview<float>(q);
  auto kv = kk::cview<float>(k);
  auto vv = kk::cview<float>(v);
  auto ov = kk::view<float>(out);
  auto lv = kk::view<float>(lse);
  auto begin = kk::cview<int32_t>(d.doc_begin);
  const size_t shmem = Scratch::shmem_size(size_t(D));
  Kokkos::parallel_for(
      "temper::attention_forward", kk::Team(d.N * H, Kokkos::AUTO).set_scratch_size(0, Kokkos::PerTeam(shmem)),
      KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t t = m.league_rank(), i = t / H, h = t % H, g = h / group;
        Scratch acc(m.team_scratch(0), size_t(D));
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t c) { acc(c) = 0.0; });
        double mx = -1e300, sum = 0.0;
        for (int64_t j = begin(i); j <= i; ++j) {
          double s = 0.0;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(m, D),
              [&](const int64_t c, double& a) { a += double(qv(t * D + c)) * double(kv((j * KVH + g) * D + c)); }, s);
          s *= scale;
          const double mnew = s > mx ? s : mx;
          const double corr = kk::math::exp(mx - mnew), e = kk::math::exp(s - mnew);
          sum = sum * corr + e;
          mx = mnew;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t c) {
            acc(c) = acc(c) * corr + e * double(vv((j * KVH + g) * D + c));
          });
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D),
                             [&](const int64_t c) { ov(t * D + c) = static_cast<float>(acc(c) / sum); });
        Kokkos::single(Kokkos::PerTeam(m), [&]() { lv(t) = static_cast<float>(mx + kk::math::log(sum)); });
      });
  Kokkos::fence();  // the document bounds are freed on return
}

void KokkosBackend::attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                                       const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                       const Tensor& cu_seqlens, int max_seqlen) {
  const char* op = "attention_backward";
  kk::check(op, DType::F32,
            {{"dq", &dq}, {"dk", &dk}, {"dv", &dv}, {"dout", &dout}, {"out", &out}, {"lse", &lse}, {"q", &q},
             {"k", &k}, {"v", &v}});
  const AttnDims d = attention_dims(*this, op, q, k, v, cu_seqlens, max_seqlen);
  check_shape(op, "dq", dq, q.shape());
  check_shape(op, "dk", dk, k.shape());
  check_shape(op, "dv", dv, v.shape());
  check_shape(op, "dout", dout, q.shape());
  check_shape(op, "out", out, q.shape());
  check_shape(op, "lse", lse, {d.N, d.H});
  if (d.N == 0) return;
  const int64_t D = d.D, H = d.H, KVH = d.KVH, group = d.group;
  const double scale = 1.0 / std::sqrt(double(D));
  auto qv = kk::cview<float>(q);
  auto kv = kk::cview<float>(k);
  auto vv = kk::cview<float>(v);
  auto gv = kk::cview<float>(dout);
  auto ov = kk::cview<float>(out);
  auto lv = kk::cview<float>(lse);
  auto dqv = kk::view<float>(dq);
  auto dkv = kk::view<float>(dk);
  auto dvv = kk::view<float>(dv);
  auto begin = kk::cview<int32_t>(d.doc_begin);
  auto end = kk::cview<int32_t>(d.doc_end);
  Tensor delta_t = alloc({d.N, H}, DType::F64);
  auto delta = kk::view<double>(delta_t);

  Kokkos::parallel_for(
      "temper::attention_backward_delta", kk::Team(d.N * H, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t t = m.league_rank();
        double s = 0.0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, D),
            [&](const int64_t c, double& a) { a += double(gv(t * D + c)) * double(ov(t * D + c)); }, s);
        Kokkos::single(Kokkos::PerTeam(m), [&]() { delta(t) = s; });
      });

  // dq: one (query, head) per team
  const size_t shmem1 = Scratch::shmem_size(size_t(D));
  Kokkos::parallel_for(
      "temper::attention_backward_dq", kk::Team(d.N * H, Kokkos::AUTO).set_scratch_size(0, Kokkos::PerTeam(shmem1)),
      KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t t = m.league_rank(), i = t / H, h = t % H, g = h / group;
        Scratch acc(m.team_scratch(0), size_t(D));
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t c) { acc(c) = 0.0; });
        for (int64_t j = begin(i); j <= i; ++j) {
          const int64_t kj = (j * KVH + g) * D;
          double qk = 0.0, dp = 0.0;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(m, D),
              [&](const int64_t c, double& a) { a += double(qv(t * D + c)) * double(kv(kj + c)); }, qk);
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(m, D),
              [&](const int64_t c, double& a) { a += double(gv(t * D + c)) * double(vv(kj + c)); }, dp);
          const double p = kk::math::exp(scale * qk - double(lv(t)));
          const double ds = p * (dp - delta(t));
          Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t c) { acc(c) += ds * double(kv(kj + c)); });
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D),
                             [&](const int64_t c) { dqv(t * D + c) = static_cast<float>(scale * acc(c)); });
      });

  // dk, dv: one (key, kv head) per team, over its query heads and the queries at
  // or after it in its document
  const size_t shmem2 = Scratch::shmem_size(size_t(2 * D));
  Kokkos::parallel_for(
      "temper::attention_backward_dkdv",
      kk::Team(d.N * KVH, Kokkos::AUTO).set_scratch_size(0, Kokkos::PerTeam(shmem2)),
      KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t t = m.league_rank(), j = t / KVH, g = t % KVH;
        Scratch acc(m.team_scratch(0), size_t(2 * D));  // [0, D) dk, [D, 2D) dv
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, 2 * D), [&](const int64_t c) { acc(c) = 0.0; });
        m.team_barrier();  // zeroed over 2D, updated below over D: other threads' elements
        for (int64_t h = g * group; h < (g + 1) * group; ++h)
          for (int64_t i = j; i < end(j); ++i) {
            const int64_t qi = i * H + h;
            double qk = 0.0, dp = 0.0;
            Kokkos::parallel_reduce(
                Kokkos::TeamThreadRange(m, D),
                [&](const int64_t c, double& a) { a += double(qv(qi * D + c)) * double(kv(t * D + c)); }, qk);
            Kokkos::parallel_reduce(
                Kokkos::TeamThreadRange(m, D),
                [&](const int64_t c, double& a) { a += double(gv(qi * D + c)) * double(vv(t * D + c)); }, dp);
            const double p = kk::math::exp(scale * qk - double(lv(qi)));
            const double ds = p * (dp - delta(qi));
            Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t c) {
              acc(c) += ds * double(qv(qi * D + c));
              acc(D + c) += p * double(gv(qi * D + c));
            });
          }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t c) {
          dkv(t * D + c) = static_cast<float>(scale * acc(c));
          dvv(t * D + c) = static_cast<float>(acc(D + c));
        });
      });
  Kokkos::fence();  // delta and the document bounds are freed on return
}

// QK-clip support: out[h] = max(out[h], largest scaled logit of head h); one team
// per head, its threads over the queries.
void KokkosBackend::attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                                        int max_seqlen) {
  const char* op = "attention_max_logit";
  kk::check(op, DType::F32, {{"out", &out}, {"q", &q}, {"k", &k}});
  max_logit_dims(op, out, q, k);
  const AttnDims d = attention_dims(*this, op, q, k, k, cu_seqlens, max_seqlen);
  if (d.N == 0) return;
  const int64_t N = d.N, D = d.D, H = d.H, KVH = d.KVH, group = d.group;
  const double scale = 1.0 / std::sqrt(double(D));
  auto qv = kk::cview<float>(q);
  auto kv = kk::cview<float>(k);
  auto ov = kk::view<float>(out);
  auto begin = kk::cview<int32_t>(d.doc_begin);
  Kokkos::parallel_for(
      "temper::attention_max_logit", kk::Team(H, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t h = m.league_rank(), g = h / group;
        double best = -1e300;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, N),
            [&](const int64_t i, double& b) {
              for (int64_t j = begin(i); j <= i; ++j) {
                double acc = 0.0;
                for (int64_t e = 0; e < D; ++e) acc += double(qv((i * H + h) * D + e)) * double(kv((j * KVH + g) * D + e));
                b = acc * scale > b ? acc * scale : b;
              }
            },
            Kokkos::Max<double>(best));
        Kokkos::single(Kokkos::PerTeam(m), [&]() { ov(h) = static_cast<float>(double(ov(h)) > best ? double(ov(h)) : best); });
      });
  Kokkos::fence();
}

}  // namespace temper
