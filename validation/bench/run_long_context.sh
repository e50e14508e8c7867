#!/usr/bin/env bash
# Long-context SFT steps on one GPU with full activation checkpointing (issue 9's
# single-GPU targets): Qwen2-1.5B shape at 16K, 32K, 64K and the 0.5B shape at
# 128K tokens, one packed sequence per step. Builds nothing.
#   validation/bench/run_long_context.sh BUILD_DIR      (about 5 minutes on an H100/H200)
set -u
B=${1:?usage: run_long_context.sh BUILD_DIR}
"$B/bench_train" --backend cuda --shapes qwen2-1.5b --seqs ${SEQS_15B:-16384,32768,65536} --warmup 1 --steps 2 \
  --checkpointing full
"$B/bench_train" --backend cuda --shapes qwen2-0.5b --seqs ${SEQS_05B:-131072} --warmup 0 --steps 1 \
  --checkpointing full
