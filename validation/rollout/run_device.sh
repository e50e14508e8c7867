#!/usr/bin/env bash
# Issue 20 device run (one call): the generation GPU tests (graph decode vs eager
# vs CPU engine, the vocabulary mask vs its CPU twin, kv cache and sampling),
# the cached-attention tests of test_cuda_attention, then bench_rollout with HF
# generate measured in the same run. Binaries are built on the host
# (build-cuda, sm_90a) and copied into .dev/rollout/ (carried).
#   bash validation/rollout/run_device.sh   (from the repository root; logs in $OUT or /tmp)
set -u
B=${B:-.dev/rollout}
O=${OUT:-/tmp}
export NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader > "$O/device.txt" 2>&1
"$B/test_cuda_generation" > "$O/tests.log" 2>&1; echo "test_cuda_generation rc=$?" >> "$O/tests.log"
"$B/test_cuda_attention" --gtest_filter='*Cached*' >> "$O/tests.log" 2>&1; echo "test_cuda_attention rc=$?" >> "$O/tests.log"
grep -E "^\[  (PASSED|FAILED)|rc=|FAILED|Failure" "$O/tests.log" | head -30
"$B/bench_rollout" --backend cuda --shapes qwen2-1.5b --batches "${BATCHES:-64,256,1024}" \
  --torch validation/bench/torch_generate.py --torch-batches "${HF_BATCHES:-64,256}" > "$O/bench.log" 2>&1
echo "bench_rollout rc=$?"
grep -v "^  hf>" "$O/bench.log" | tail -32
