// Kokkos backend: the ops of kernels.h not ported yet (issue 24). Each throws a
// temper::Error naming itself, so a run that reaches one stops with a clear
// message; the backend is not offered as run.backend until this file is gone.
#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace {
[[noreturn]] void not_yet(const char* op) {
  fail("kokkos backend: ", op, " is not implemented yet (issue 24); use run.backend = cpu or cuda");
}
}  // namespace

void KokkosBackend::polynorm_forward(Tensor&, Tensor&, const Tensor&, const Tensor&, float) {
  not_yet("polynorm_forward");
}
void KokkosBackend::polynorm_backward(Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_yet("polynorm_backward");
}
void KokkosBackend::diff_attn_combine_forward(Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                              const Tensor&, double, float) {
  not_yet("diff_attn_combine_forward");
}
void KokkosBackend::diff_attn_combine_backward(Tensor&, Tensor&, Tensor&, Tensor&, const Tensor&, const Tensor&,
                                               const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  not_yet("diff_attn_combine_backward");
}
void KokkosBackend::kv_cache_write(Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_yet("kv_cache_write");
}
void KokkosBackend::attention_cached(Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                     const Tensor&) {
  not_yet("attention_cached");
}
void KokkosBackend::sample_tokens(Tensor&, Tensor&, const Tensor&, const Tensor&, float, int, float) {
  not_yet("sample_tokens");
}

}  // namespace temper
