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

// The variant attention_forward / attention_backward use now (1 or 2). An
// unknown value in the environment variable throws temper::Error naming it.
int attention_variant(AttnPass pass);
// Overrides the choice for `pass` (1 .. kAttnVariants; 0 = the environment's again).
void set_attention_variant(AttnPass pass, int variant);

}  // namespace temper::cuda
