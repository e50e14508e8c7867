// Run-time choice between the attention kernel variants of the CUDA backend.
//   v1: the default kernels (attention_forward.cu, attention_backward.cu).
//   v2: forward with 32 query rows per warp (attention_forward_v2.cu);
//       backward with query steps twice as long: 64 for D = 128, 128 for
//       D = 64 (attention_backward.cu, BwdCfg).
// The environment variables TEMPER_ATTN_FWD and TEMPER_ATTN_BWD (v1 | v2) are
// read once, at the first attention call; set_attention_variant overrides them
// for the rest of the process (tests and benchmarks run every variant in one
// process). Variants differ only in speed: same masking, outputs and lse.
// Plain C++ so host-only code (tests, benchmarks) can include it.
#pragma once

namespace temper::cuda {

enum class AttnPass { Forward, Backward };
constexpr int kAttnVariants = 2;  // variants 1 .. kAttnVariants

// The variant attention_forward / attention_backward use now (1 or 2), or 0
// when neither the environment nor an override chose one: then the measured
// default applies (H200, 2026-12-02, validation/bench/results_2026-12-02_h200.md):
// forward v2 for D = 128 (201 -> 220 TFLOP/s at 4K, 232 -> 281 at 16K) and v1 for
// D = 64 (where v2 is 7-9 % slower), backward v2 for both (+7 % / +8 %). An
// unknown value in the environment variable throws temper::Error naming it.
int attention_variant(AttnPass pass);
// Overrides the choice for `pass` (1 .. kAttnVariants; 0 = the environment's again).
void set_attention_variant(AttnPass pass, int variant);

}  // namespace temper::cuda
