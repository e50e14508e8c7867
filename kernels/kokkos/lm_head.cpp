// Kokkos backend: output head + per-token log-probabilities, chunked over tokens
// (the logits of kLmHeadChunk rows at a time). Per chunk: logits = x_chunk @ W^T
// (KokkosBlas::gemm), then one team per row: a stable log-softmax
//   logp = logits[t] - (max + log sum exp(logits - max))
// and, for the backward of L = sum_n dlogp[n] logp[n], the row overwritten by
//   dlogits[n, v] = dlogp[n] (onehot(t_n)[v] - softmax(logits[n])[v]),
// then dx_chunk = dlogits @ W and dW += dlogits^T @ x_chunk. Rows with a target < 0
// get logp 0 and a zero dlogits row. Sums in double, as on the CPU.
#include <algorithm>
#include <climits>

#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace kk {

// Log-softmax of each chunk row (and its gradient in place when backward). Not in an
// unnamed namespace: nvcc rejects device lambdas in functions with internal linkage.
void rows_logsoftmax(kk::Vec<float> logits, int64_t rows, int64_t V, int64_t r0, kk::Vec<const int32_t> targets,
                     kk::Vec<float> logp, kk::Vec<const float> dlogp, bool backward) {
  Kokkos::parallel_for(
      "temper::lm_head_rows", kk::Team(rows, Kokkos::AUTO), KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t r = m.league_rank(), n = r0 + r, base = r * V;
        const int32_t tgt = targets(n);
        if (tgt < 0) {
          Kokkos::single(Kokkos::PerTeam(m), [&]() { logp(n) = 0.0f; });
          if (backward) Kokkos::parallel_for(Kokkos::TeamThreadRange(m, V), [&](const int64_t j) { logits(base + j) = 0.0f; });
          return;
        }
        double mx = 0.0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, V),
            [&](const int64_t j, double& a) { a = double(logits(base + j)) > a ? double(logits(base + j)) : a; },
            Kokkos::Max<double>(mx));
        double sum = 0.0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, V),
            [&](const int64_t j, double& a) { a += kk::math::exp(double(logits(base + j)) - mx); }, sum);
        const double lse = mx + kk::math::log(sum);
        const float lp = static_cast<float>(double(logits(base + tgt)) - lse);
        m.team_barrier();  // every thread has read the target's logit before rows are overwritten
        Kokkos::single(Kokkos::PerTeam(m), [&]() { logp(n) = lp; });
        if (backward) {
          const double g = dlogp(n);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(m, V), [&](const int64_t j) {
            float v = static_cast<float>(-g * kk::math::exp(double(logits(base + j)) - lse));
            if (j == tgt) v += static_cast<float>(g);
            logits(base + j) = v;
          });
        }
      });
}

}  // namespace kk

namespace {

constexpr int64_t kLmHeadChunk = 256;

HeadDims checked_head_dims(const char* op, const Tensor& logp, const Tensor& x, const Tensor& W,
                           const Tensor& targets) {
  const HeadDims d = head_dims(op, logp, x, W);
  kk::check_i32(op, "targets", targets, d.N);
  kk::check_index_range(op, "targets", targets, INT32_MIN, d.V);
  return d;
}

void head_impl(Kernels& k, const HeadDims& d, Tensor& logp, Tensor* dx, Tensor* dW, const Tensor& x,
               const Tensor& W, const Tensor& targets, const Tensor* dlogp) {
  const int64_t R = kLmHeadChunk, V = d.V, C = d.C;
  if (d.N == 0) return;
  Tensor buf = k.alloc({std::min(R, d.N), V}, DType::F32);
  auto logits = kk::view<float>(buf);
  auto lp = kk::view<float>(logp);
  auto tg = kk::cview<int32_t>(targets);
  kk::Vec<const float> dl = dlogp ? kk::cview<float>(*dlogp) : kk::Vec<const float>();
  for (int64_t r0 = 0; r0 < d.N; r0 += R) {
    const int64_t rows = std::min(R, d.N - r0);
    const float* xc = x.data<float>() + r0 * C;
    kk::gemm(false, true, rows, V, C, 1.0f, xc, C, W.data<float>(), C, 0.0f, buf.data<float>(), V);
    kk::rows_logsoftmax(logits, rows, V, r0, tg, lp, dl, dlogp != nullptr);
    if (!dlogp) continue;
    if (dx) kk::gemm(false, false, rows, C, V, 1.0f, buf.data<float>(), V, W.data<float>(), C, 0.0f,
                     dx->data<float>() + r0 * C, C);
    kk::gemm(true, false, V, C, rows, 1.0f, buf.data<float>(), V, xc, C, 1.0f, dW->data<float>(), C);
  }
  Kokkos::fence();  // the chunk buffer is freed on return
}

}  // namespace

void KokkosBackend::lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) {
  const char* op = "lm_head_logprobs";
  kk::check(op, DType::F32, {{"logp", &logp}, {"x", &x}, {"W", &W}});
  const HeadDims d = checked_head_dims(op, logp, x, W, targets);
  head_impl(*this, d, logp, nullptr, nullptr, x, W, targets, nullptr);
}

void KokkosBackend::lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x,
                                              const Tensor& W, const Tensor& targets, const Tensor& dlogp) {
  const char* op = "lm_head_logprobs_backward";
  kk::check(op, DType::F32, {{"logp", &logp}, {"dW", &dW}, {"x", &x}, {"W", &W}, {"dlogp", &dlogp}});
  if (dx) kk::check(op, DType::F32, {{"dx", dx}});
  const HeadDims d = checked_head_dims(op, logp, x, W, targets);
  check_shape(op, "dW", dW, W.shape());
  check_shape(op, "dlogp", dlogp, {d.N});
  if (dx) check_shape(op, "dx", *dx, x.shape());
  head_impl(*this, d, logp, dx, &dW, x, W, targets, &dlogp);
}

}  // namespace temper
