// CPU backend: token embedding lookup and its scatter-add backward.
#include <algorithm>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

// Every token id must index a row of the table.
void check_tokens(const char* op, const Tensor& tokens, int64_t V) {
  const int32_t* tok = tokens.data<int32_t>();
  for (int64_t n = 0; n < tokens.numel(); ++n)
    TEMPER_CHECK(tok[n] >= 0 && tok[n] < V, op, ": tokens[", n, "] = ", tok[n],
                 " is outside the embedding table of ", V, " rows");
}

}  // namespace

void CpuKernels::embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) {
  const char* op = "embedding_forward";
  DType dt = cpu::common_float_dtype(op, {{"out", &out}, {"wte", &wte}});
  TEMPER_CHECK(wte.ndim() == 2, op, ": 'wte' must be [V, C], got ", shape_str(wte.shape()));
  const int64_t V = wte.dim(0), C = wte.dim(1), N = tokens.numel();
  cpu::check_i32(op, "tokens", tokens, N);
  cpu::check_shape(op, "out", out, {N, C});
  check_tokens(op, tokens, V);
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const int32_t* tok = tokens.data<int32_t>();
    const T* w = wte.data<T>();
    T* o = out.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) std::copy(w + tok[n] * C, w + (tok[n] + 1) * C, o + n * C);
  });
}

void CpuKernels::embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) {
  const char* op = "embedding_backward";
  DType dt = cpu::common_float_dtype(op, {{"dwte", &dwte}, {"dout", &dout}});
  TEMPER_CHECK(dwte.ndim() == 2, op, ": 'dwte' must be [V, C], got ", shape_str(dwte.shape()));
  const int64_t V = dwte.dim(0), C = dwte.dim(1), N = tokens.numel();
  cpu::check_i32(op, "tokens", tokens, N);
  cpu::check_shape(op, "dout", dout, {N, C});
  check_tokens(op, tokens, V);
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const int32_t* tok = tokens.data<int32_t>();
    const T* g = dout.data<T>();
    T* dw = dwte.data<T>();
    // Repeated tokens hit the same row, so threads split the columns, not the
    // tokens; each thread adds every token's slice of its column block in order.
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kBlock, c1 = std::min(C, c0 + kBlock);
      for (int64_t n = 0; n < N; ++n) {
        T* row = dw + tok[n] * C;
        const T* src = g + n * C;
        for (int64_t c = c0; c < c1; ++c) row[c] += src[c];
      }
    }
  });
}

}  // namespace temper
