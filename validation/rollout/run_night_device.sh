#!/usr/bin/env bash
# The night's issue 20 device call (results_2026-12-04_h200_night.md), from the repository root.
# Pack on the host first (build-cuda: -DTEMPER_CUDA=ON -DTEMPER_KOKKOS=OFF -DCMAKE_CUDA_ARCHITECTURES=90a):
#   T=$(mktemp -d); cp build-cuda/{temper,bench_rollout} build-cuda/tests/test_cuda_* $T/; strip $T/*
#   cp -r <qwen3 tokenizer folder> $T/qwen3; mkdir -p .dev/final; tar -C $T -cJf .dev/final/bins.tar.xz .
# then one `run` with carry [".dev/final"] and the command `bash validation/rollout/run_night_device.sh`
# (~270 s: every GPU test binary side by side, bench_rollout with HF generate, group prefill, 3 RL steps).
set -u
REAL_OUT=${OUT:-/tmp/out}
mkdir -p /tmp/b /tmp/o "$REAL_OUT"
tar -xJf .dev/final/bins.tar.xz -C /tmp/b
export OUT=/tmp/o
B=/tmp/b ALL_TESTS=1 TEST_S=${TEST_S:-150} BENCH_FLAGS=--no-eager BENCH_S=${BENCH_S:-200} GROUP_S=60 \
  RL_STEPS=${RL_STEPS:-3} RL_S=${RL_S:-150} timeout "${ALL_S:-480}" bash validation/rollout/run_device.sh > /tmp/o/summary.txt 2>&1
echo "run_device rc=$?" >> /tmp/o/summary.txt
cat /tmp/o/summary.txt
tar -czf "$REAL_OUT/logs.tgz" -C /tmp/o . 2>/dev/null
cp /tmp/o/summary.txt "$REAL_OUT/summary.txt"
