// CPU backend: exact causal attention within documents, grouped-query.
// For query token i, head h (kv head g = h / (H / KVH)) and the tokens j of
// i's document with j <= i:
//   s_ij = q_i . k_j / sqrt(D),  lse_i = log sum_j exp(s_ij),  p_ij = exp(s_ij - lse_i)
//   out_i = sum_j p_ij v_j
// Backward, as in flash-attention, from the stored lse and out:
//   delta_i = dout_i . out_i,  dp_ij = dout_i . v_j,  ds_ij = p_ij (dp_ij - delta_i)
//   dq_i = scale sum_j ds_ij k_j,  dk_j = scale sum_i ds_ij q_i,  dv_j = sum_i p_ij dout_i
// dq is computed in parallel over (query, head); dk and dv over (key, kv head),
// each summing over its query heads and later queries, so no two threads write
// the same element. Dot products and softmax sums accumulate in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

struct AttnDims {
  int64_t N, H, KVH, D, group;
  std::vector<int64_t> doc_begin, doc_end;  // per token: its document's [begin, end)
  int64_t longest = 0;
};

AttnDims attention_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                        int max_seqlen) {
  TEMPER_CHECK(q.ndim() == 3, op, ": 'q' must be [N, H, D], got ", shape_str(q.shape()));
  AttnDims d;
  d.N = q.dim(0);
  d.H = q.dim(1);
  d.D = q.dim(2);
  TEMPER_CHECK(k.ndim() == 3 && k.dim(0) == d.N && k.dim(2) == d.D, op, ": 'k' has shape ", shape_str(k.shape()),
               ", expected [", d.N, ", KVH, ", d.D, "] to match 'q' ", shape_str(q.shape()));
  d.KVH = k.dim(1);
  cpu::check_shape(op, "v", v, k.shape());
  TEMPER_CHECK(d.KVH > 0 && d.H % d.KVH == 0, op, ": query heads H = ", d.H, " must be a multiple of kv heads KVH = ",
               d.KVH);
  TEMPER_CHECK(d.D > 0, op, ": head dimension must be positive");
  d.group = d.H / d.KVH;

  TEMPER_CHECK(cu_seqlens.numel() >= 1, op, ": 'cu_seqlens' must have S+1 >= 1 elements");
  cpu::check_i32(op, "cu_seqlens", cu_seqlens, cu_seqlens.numel());
  const int32_t* cu = cu_seqlens.data<int32_t>();
  const int64_t S = cu_seqlens.numel() - 1;
  TEMPER_CHECK(cu[0] == 0 && cu[S] == d.N, op, ": cu_seqlens must start at 0 and end at N = ", d.N, ", got ", cu[0],
               " ... ", cu[S]);
  d.doc_begin.resize(d.N);
  d.doc_end.resize(d.N);
  for (int64_t s = 0; s < S; ++s) {
    TEMPER_CHECK(cu[s + 1] >= cu[s], op, ": cu_seqlens must be non-decreasing, but cu_seqlens[", s, "] = ", cu[s],
                 " > cu_seqlens[", s + 1, "] = ", cu[s + 1]);
    const int64_t len = cu[s + 1] - cu[s];
    TEMPER_CHECK(len <= max_seqlen, op, ": document ", s, " has ", len, " tokens, more than max_seqlen = ",
                 max_seqlen);
    d.longest = std::max(d.longest, len);
    for (int64_t t = cu[s]; t < cu[s + 1]; ++t) {
      d.doc_begin[t] = cu[s];
      d.doc_end[t] = cu[s + 1];
    }
  }
  return d;
}

template <typename T>
double dot(const T* a, const T* b, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += double(a[i]) * double(b[i]);
  return acc;
}

template <typename T>
void forward_impl(const AttnDims& d, T* out, T* lse, const T* q, const T* k, const T* v) {
  const double scale = 1.0 / std::sqrt(double(d.D));
  const int64_t D = d.D, H = d.H, KVH = d.KVH;
#pragma omp parallel
  {
    std::vector<double> score(std::max<int64_t>(d.longest, 1)), acc(D);
#pragma omp for schedule(dynamic, 8)
    for (int64_t t = 0; t < d.N * H; ++t) {
      const int64_t i = t / H, h = t % H, g = h / d.group;
      const T* qi = q + (i * H + h) * D;
      const int64_t j0 = d.doc_begin[i];
      double mx = -INFINITY;
      for (int64_t j = j0; j <= i; ++j) {
        score[j - j0] = scale * dot(qi, k + (j * KVH + g) * D, D);
        mx = std::max(mx, score[j - j0]);
      }
      double sum = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = j0; j <= i; ++j) {
        const double e = std::exp(score[j - j0] - mx);
        sum += e;
        const T* vj = v + (j * KVH + g) * D;
        for (int64_t c = 0; c < D; ++c) acc[c] += e * double(vj[c]);
      }
      T* oi = out + (i * H + h) * D;
      for (int64_t c = 0; c < D; ++c) oi[c] = static_cast<T>(acc[c] / sum);
      lse[i * H + h] = static_cast<T>(mx + std::log(sum));
    }
  }
}

template <typename T>
void backward_impl(const AttnDims& d, T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse, const T* q,
                   const T* k, const T* v) {
  const double scale = 1.0 / std::sqrt(double(d.D));
  const int64_t D = d.D, H = d.H, KVH = d.KVH, N = d.N;
  std::vector<double> delta(N * H);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < N * H; ++t) delta[t] = dot(dout + t * D, out + t * D, D);

  // dq: one (query, head) per iteration.
#pragma omp parallel
  {
    std::vector<double> acc(D);
#pragma omp for schedule(dynamic, 8)
    for (int64_t t = 0; t < N * H; ++t) {
      const int64_t i = t / H, h = t % H, g = h / d.group;
      const T* qi = q + t * D;
      const T* gi = dout + t * D;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = d.doc_begin[i]; j <= i; ++j) {
        const T* kj = k + (j * KVH + g) * D;
        const double p = std::exp(scale * dot(qi, kj, D) - double(lse[t]));
        const double ds = p * (dot(gi, v + (j * KVH + g) * D, D) - delta[t]);
        for (int64_t c = 0; c < D; ++c) acc[c] += ds * double(kj[c]);
      }
      for (int64_t c = 0; c < D; ++c) dq[t * D + c] = static_cast<T>(scale * acc[c]);
    }
  }

  // dk, dv: one (key, kv head) per iteration, over its query heads and the
  // queries at or after it in its document.
#pragma omp parallel
  {
    std::vector<double> acck(D), accv(D);
#pragma omp for schedule(dynamic, 8)
    for (int64_t t = 0; t < N * KVH; ++t) {
      const int64_t j = t / KVH, g = t % KVH;
      const T* kj = k + t * D;
      const T* vj = v + t * D;
      std::fill(acck.begin(), acck.end(), 0.0);
      std::fill(accv.begin(), accv.end(), 0.0);
      for (int64_t h = g * d.group; h < (g + 1) * d.group; ++h) {
        for (int64_t i = j; i < d.doc_end[j]; ++i) {
          const int64_t qi_idx = i * H + h;
          const T* qi = q + qi_idx * D;
          const T* gi = dout + qi_idx * D;
          const double p = std::exp(scale * dot(qi, kj, D) - double(lse[qi_idx]));
          const double ds = p * (dot(gi, vj, D) - delta[qi_idx]);
          for (int64_t c = 0; c < D; ++c) {
            accv[c] += p * double(gi[c]);
            acck[c] += ds * double(qi[c]);
          }
        }
      }
      for (int64_t c = 0; c < D; ++c) {
        dk[t * D + c] = static_cast<T>(scale * acck[c]);
        dv[t * D + c] = static_cast<T>(accv[c]);
      }
    }
  }
}

}  // namespace

void CpuKernels::attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& cu_seqlens, int max_seqlen) {
  const char* op = "attention_forward";
  DType dt = cpu::common_float_dtype(op, {{"out", &out}, {"lse", &lse}, {"q", &q}, {"k", &k}, {"v", &v}});
  const AttnDims d = attention_dims(op, q, k, v, cu_seqlens, max_seqlen);
  cpu::check_shape(op, "out", out, q.shape());
  cpu::check_shape(op, "lse", lse, {d.N, d.H});
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    forward_impl<T>(d, out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>());
  });
}

void CpuKernels::attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                                    const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& cu_seqlens, int max_seqlen) {
  const char* op = "attention_backward";
  DType dt = cpu::common_float_dtype(op, {{"dq", &dq},
                                          {"dk", &dk},
                                          {"dv", &dv},
                                          {"dout", &dout},
                                          {"out", &out},
                                          {"lse", &lse},
                                          {"q", &q},
                                          {"k", &k},
                                          {"v", &v}});
  const AttnDims d = attention_dims(op, q, k, v, cu_seqlens, max_seqlen);
  cpu::check_shape(op, "dq", dq, q.shape());
  cpu::check_shape(op, "dk", dk, k.shape());
  cpu::check_shape(op, "dv", dv, v.shape());
  cpu::check_shape(op, "dout", dout, q.shape());
  cpu::check_shape(op, "out", out, q.shape());
  cpu::check_shape(op, "lse", lse, {d.N, d.H});
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    backward_impl<T>(d, dq.data<T>(), dk.data<T>(), dv.data<T>(), dout.data<T>(), out.data<T>(), lse.data<T>(),
                     q.data<T>(), k.data<T>(), v.data<T>());
  });
}

}  // namespace temper
