// Kokkos backend: token embedding lookup and its scatter-add backward. The
// backward gives each thread a column and adds the tokens in order, so repeated
// tokens need no atomics and the sums are deterministic.
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

void KokkosBackend::embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) {
  const char* op = "embedding_forward";
  kk::check(op, DType::F32, {{"out", &out}, {"wte", &wte}});
  TEMPER_CHECK(wte.ndim() == 2, op, ": 'wte' must be [V, C], got ", shape_str(wte.shape()));
  const int64_t V = wte.dim(0), C = wte.dim(1), N = tokens.numel();
  kk::check_i32(op, "tokens", tokens, N);
  check_shape(op, "out", out, {N, C});
  kk::check_index_range(op, "tokens", tokens, 0, V);
  auto o = kk::view<float>(out);
  auto w = kk::cview<float>(wte);
  auto tok = kk::cview<int32_t>(tokens);
  Kokkos::parallel_for(
      "temper::embedding_forward", kk::Range(0, N * C), KOKKOS_LAMBDA(const int64_t i) {
        const int64_t n = i / C, c = i % C;
        o(i) = w(int64_t(tok(n)) * C + c);
      });
}

void KokkosBackend::embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) {
  const char* op = "embedding_backward";
  kk::check(op, DType::F32, {{"dwte", &dwte}, {"dout", &dout}});
  TEMPER_CHECK(dwte.ndim() == 2, op, ": 'dwte' must be [V, C], got ", shape_str(dwte.shape()));
  const int64_t V = dwte.dim(0), C = dwte.dim(1), N = tokens.numel();
  kk::check_i32(op, "tokens", tokens, N);
  check_shape(op, "dout", dout, {N, C});
  kk::check_index_range(op, "tokens", tokens, 0, V);
  auto dw = kk::view<float>(dwte);
  auto g = kk::cview<float>(dout);
  auto tok = kk::cview<int32_t>(tokens);
  Kokkos::parallel_for(
      "temper::embedding_backward", kk::Range(0, C), KOKKOS_LAMBDA(const int64_t c) {
        for (int64_t n = 0; n < N; ++n) dw(int64_t(tok(n)) * C + c) += g(n * C + c);
      });
}

}  // namespace temper
