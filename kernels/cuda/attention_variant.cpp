// TEMPER_ATTN_FWD / TEMPER_ATTN_BWD and their programmatic override.
#include "kernels/cuda/attention_variant.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace temper::cuda {
namespace {

std::atomic<int> g_override[2] = {{0}, {0}};
std::atomic<int> g_last[2] = {{0}, {0}};

// 0 (automatic: the measured default) when unset or empty, else "v1" / "1" .. "v<kAttnVariants>".
int parse_env(const char* name) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') return 0;
  const char* digits = (*s == 'v' || *s == 'V') ? s + 1 : s;
  for (int v = 1; v <= kAttnVariants; ++v)
    if (std::string(digits) == std::to_string(v)) return v;
  TEMPER_CHECK(false, "environment variable ", name, "='", s, "' is not an attention kernel variant (v1 .. v",
               kAttnVariants, ")");
  return 1;
}

int env_choice(AttnPass pass) {
  static const int fwd = parse_env("TEMPER_ATTN_FWD");
  static const int bwd = parse_env("TEMPER_ATTN_BWD");
  return pass == AttnPass::Forward ? fwd : bwd;
}

}  // namespace

int attention_variant(AttnPass pass) {
  const int o = g_override[pass == AttnPass::Forward ? 0 : 1].load(std::memory_order_relaxed);
  return o != 0 ? o : env_choice(pass);
}

void set_attention_variant(AttnPass pass, int variant) {
  TEMPER_CHECK(variant >= 0 && variant <= kAttnVariants, "set_attention_variant: variant ", variant,
               " is not 0 (environment) or 1 .. ", kAttnVariants);
  g_override[pass == AttnPass::Forward ? 0 : 1].store(variant, std::memory_order_relaxed);
}

int attention_last_variant(AttnPass pass) {
  return g_last[pass == AttnPass::Forward ? 0 : 1].load(std::memory_order_relaxed);
}

void note_attention_variant(AttnPass pass, int variant) {
  g_last[pass == AttnPass::Forward ? 0 : 1].store(variant, std::memory_order_relaxed);
}

}  // namespace temper::cuda
