// CPU backend: output head + per-token log-probabilities, chunked over tokens.
// For a chunk of rows: logits[R, V] = x_chunk @ W^T (GEMM), then per row a
// stable log-softmax: logp = logits[t] - (max + log sum exp(logits - max)).
// Backward of L = sum_n dlogp[n] logp[n]:
//   dlogits[n, v] = dlogp[n] (onehot(t_n)[v] - softmax(logits[n])[v])
//   dx_chunk = dlogits @ W (overwritten),  dW += dlogits^T @ x_chunk
// Rows with target < 0 get logp 0 and a zero dlogits row.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

HeadDims checked_head_dims(const char* op, const Tensor& logp, const Tensor& x, const Tensor& W,
                           const Tensor& targets) {
  const HeadDims d = temper::head_dims(op, logp, x, W);
  cpu::check_i32(op, "targets", targets, d.N);
  const int32_t* t = targets.data<int32_t>();
  for (int64_t n = 0; n < d.N; ++n)
    TEMPER_CHECK(t[n] < d.V, op, ": targets[", n, "] = ", t[n], " is outside the vocabulary of ", d.V,
                 " rows of 'W'");
  return d;
}

// The shared chunk loop. With dlogp null it is the forward only (dx, dW unused);
// with dlogp it also writes dx (when non-null) and accumulates dW.
template <typename T>
void head_impl(const HeadDims& d, T* logp, T* dx, T* dW, const T* x, const T* W, const int32_t* targets,
               const T* dlogp) {
  const int64_t R = CpuKernels::kLmHeadChunk, V = d.V, C = d.C;
  std::vector<T> logits(static_cast<size_t>(std::min(R, std::max<int64_t>(d.N, 1)) * V));
  for (int64_t r0 = 0; r0 < d.N; r0 += R) {
    const int64_t rows = std::min(R, d.N - r0);
    const T* xc = x + r0 * C;
    cpu::gemm(false, true, rows, V, C, T(1), xc, C, W, C, T(0), logits.data(), V);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r0 + r;
      T* row = logits.data() + r * V;
      const int32_t tgt = targets[n];
      if (tgt < 0) {
        logp[n] = T(0);
        if (dlogp) std::fill(row, row + V, T(0));
        continue;
      }
      double mx = -INFINITY;
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
      double sum = 0.0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(double(row[j]) - mx);
      const double lse = mx + std::log(sum);
      logp[n] = static_cast<T>(double(row[tgt]) - lse);
      if (dlogp) {
        // Overwrite the logits row with its gradient.
        const double g = dlogp[n];
        for (int64_t j = 0; j < V; ++j) row[j] = static_cast<T>(-g * std::exp(double(row[j]) - lse));
        row[tgt] += static_cast<T>(g);
      }
    }
    if (!dlogp) continue;
    if (dx) cpu::gemm(false, false, rows, C, V, T(1), logits.data(), V, W, C, T(0), dx + r0 * C, C);
    cpu::gemm(true, false, V, C, rows, T(1), logits.data(), V, xc, C, T(1), dW, C);
  }
}

}  // namespace

void CpuKernels::lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) {
  const char* op = "lm_head_logprobs";
  DType dt = cpu::common_float_dtype(op, {{"logp", &logp}, {"x", &x}, {"W", &W}});
  const HeadDims d = checked_head_dims(op, logp, x, W, targets);
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    head_impl<T>(d, logp.data<T>(), nullptr, nullptr, x.data<T>(), W.data<T>(), targets.data<int32_t>(), nullptr);
  });
}

void CpuKernels::lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x, const Tensor& W,
                                           const Tensor& targets, const Tensor& dlogp) {
  const char* op = "lm_head_logprobs_backward";
  DType dt = cpu::common_float_dtype(op, {{"logp", &logp}, {"dW", &dW}, {"x", &x}, {"W", &W}, {"dlogp", &dlogp}});
  if (dx) cpu::common_float_dtype(op, {{"x", &x}, {"dx", dx}});
  const HeadDims d = checked_head_dims(op, logp, x, W, targets);
  cpu::check_shape(op, "dW", dW, W.shape());
  cpu::check_shape(op, "dlogp", dlogp, {d.N});
  if (dx) cpu::check_shape(op, "dx", *dx, x.shape());
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    head_impl<T>(d, logp.data<T>(), dx ? dx->data<T>() : nullptr, dW.data<T>(), x.data<T>(), W.data<T>(),
                 targets.data<int32_t>(), dlogp.data<T>());
  });
}

}  // namespace temper
