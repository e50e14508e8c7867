// The SFT phase: packed sequences, assistant-only loss, AdamW with warmup +
// cosine, gradient accumulation, DP-replicate gradient averaging, a curriculum
// of stages (each its own files, seq_len and step count), periodic held-out
// exact-match evaluation by greedy decoding, checkpoints that resume bit for bit.
#pragma once

namespace temper {
class RunContext;
int run_sft_phase(RunContext& ctx);
}  // namespace temper
