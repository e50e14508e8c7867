// Kokkos backend: sample_tokens, staged through the host. The logits rows and u
// are copied to host memory (Kokkos::deep_copy through copy()), the CPU
// reference draws (kernels/cpu/sampling.cpp: top-k, top-p, inverse CDF in
// descending-z order, greedy argmax, all in double), and tokens and logp are
// copied back. Same draws as the CPU backend by construction; the cost is one
// [B, V] transfer per call (a device-side sort is the work left for decode speed).
// mask_logits_from (a vocabulary padded past the tokenizer's) writes -inf in place.
#include <algorithm>
#include <limits>

#include "kernels/kokkos/kokkos_common.h"

namespace temper {

void KokkosBackend::sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u,
                                  float temperature, int top_k, float top_p) {
  const char* op = "sample_tokens";
  for (const auto& [name, t] : {kk::NamedTensor{"tokens", &tokens}, kk::NamedTensor{"logp", &logp},
                                kk::NamedTensor{"logits", &logits}, kk::NamedTensor{"u", &u}})
    TEMPER_CHECK(t->device() == Device::KOKKOS, op, ": '", name, "' is on ", device_name(t->device()),
                 ", expected a kokkos tensor");
  static std::unique_ptr<Kernels> cpu = make_cpu_kernels();
  Tensor hl = Tensor::empty(logits.shape(), logits.dtype(), Device::CPU);
  Tensor hu = Tensor::empty(u.shape(), u.dtype(), Device::CPU);
  Tensor ht = Tensor::empty(tokens.shape(), tokens.dtype(), Device::CPU);
  Tensor hp = Tensor::empty(logp.shape(), logp.dtype(), Device::CPU);
  copy(hl, logits);
  copy(hu, u);
  cpu->sample_tokens(ht, hp, hl, hu, temperature, top_k, top_p);  // checks shapes, dtypes, u and the rows
  copy(tokens, ht);
  copy(logp, hp);
}

void KokkosBackend::mask_logits_from(Tensor& logits, int64_t first) {
  const char* op = "mask_logits_from";
  TEMPER_CHECK(logits.device() == Device::KOKKOS, op, ": 'logits' is on ", device_name(logits.device()),
               ", expected a kokkos tensor");
  TEMPER_CHECK(logits.ndim() == 2, op, ": 'logits' must be [B, V], got ", shape_str(logits.shape()));
  const int64_t B = logits.dim(0), V = logits.dim(1), from = std::max<int64_t>(first, 0), W = V - from;
  if (W <= 0 || B == 0) return;
  const kk::Range rows_tail(0, B * W);
  if (logits.dtype() == DType::F32) {
    auto x = kk::view<float>(logits);
    const float ninf = -std::numeric_limits<float>::infinity();
    Kokkos::parallel_for(
        "temper::mask_logits_f32", rows_tail, KOKKOS_LAMBDA(const int64_t i) { x((i / W) * V + from + i % W) = ninf; });
  } else if (logits.dtype() == DType::F64) {
    auto x = kk::view<double>(logits);
    const double ninf = -std::numeric_limits<double>::infinity();
    Kokkos::parallel_for(
        "temper::mask_logits_f64", rows_tail, KOKKOS_LAMBDA(const int64_t i) { x((i / W) * V + from + i % W) = ninf; });
  } else if (logits.dtype() == DType::BF16) {
    auto x = kk::view<uint16_t>(logits);  // bf16 bits: 0xFF80 is -inf
    Kokkos::parallel_for(
        "temper::mask_logits_bf16", rows_tail,
        KOKKOS_LAMBDA(const int64_t i) { x((i / W) * V + from + i % W) = uint16_t(0xFF80); });
  } else {
    fail(op, ": 'logits' has dtype ", dtype_name(logits.dtype()), ", the kokkos backend masks f32, f64 or bf16");
  }
}

}  // namespace temper
