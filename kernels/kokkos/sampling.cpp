// Kokkos backend: sample_tokens, staged through the host. The logits rows and u
// are copied to host memory (Kokkos::deep_copy through copy()), the CPU
// reference draws (kernels/cpu/sampling.cpp: top-k, top-p, inverse CDF in
// descending-z order, greedy argmax, all in double), and tokens and logp are
// copied back. Same draws as the CPU backend by construction; the cost is one
// [B, V] transfer per call (a device-side sort is the work left for decode speed).
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

}  // namespace temper
