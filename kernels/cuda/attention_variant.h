// Run-time choice between the attention kernel variants of the CUDA backend.
//   v1: the default kernels (attention_forward.cu, attention_backward.cu).
//   v2: forward with 32 query rows per warp (attention_forward_v2.cu);
//       backward with query steps twice as long: 64 for D = 128, 128 for
//       D = 64 (attention_backward.cu, BwdCfg).
//   v3: cuDNN's fused flash attention through the backend graph API
//       (cudnn_attention.h): D = 64 / 128 when the build found cuDNN and cuDNN
//       accepts the shape; otherwise the call runs the automatic v2 / v1 choice.
// The environment variables TEMPER_ATTN_FWD and TEMPER_ATTN_BWD (v1 | v2) are
// read once, at the first attention call; set_attention_variant overrides them
// for the rest of the process (tests and benchmarks run every variant in one
// process). Variants differ only in speed: same masking, outputs and lse.
// Plain C++ so host-only code (tests, benchmarks) can include it.
#pragma once

#include <cstdint>

namespace temper::cuda {

enum class AttnPass { Forward, Backward };
constexpr int kAttnVariants = 3;  // variants 1 .. kAttnVariants

// The variant attention_forward / attention_backward use now (1 .. 3), or 0
// when neither the environment nor an override chose one: then the measured
// default applies: v3 (cuDNN) wherever it runs (H200, 2026-12-04,
// validation/bench/results_2026-12-04_h200_attention.md); else, as measured on
// 2026-12-02 (results_2026-12-02_h200.md), forward v2 for D = 128 and v1 for
// D = 64, backward v2 for both. An unknown value in the environment variable
// throws temper::Error naming it.
int attention_variant(AttnPass pass);
// Overrides the choice for `pass` (1 .. kAttnVariants; 0 = the environment's again).
void set_attention_variant(AttnPass pass, int variant);

// The variant the last attention_forward / attention_backward call of this
// process actually ran (1 .. 3; the scalar fallback for other head dims counts
// as 1), 0 before the first call. Benchmarks and tests use it to tell a v3
// request that fell back from one cuDNN served.
int attention_last_variant(AttnPass pass);
void note_attention_variant(AttnPass pass, int variant);  // called by the kernels
// True when this build links cuDNN (CMake option TEMPER_CUDNN): v3 can run.
bool attention_cudnn_built();
// Overrides TEMPER_CUDNN_MAX_WORKSPACE_MB (the largest backward workspace v3
// may take before a call runs v2; cudnn_attention.h); negative: the environment's again.
void set_cudnn_workspace_limit_mb(int64_t mb);

}  // namespace temper::cuda
