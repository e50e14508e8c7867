#!/usr/bin/env bash
# One device call for issue 19's "rest of the step" figures (builds nothing):
#   validation/bench/run_step_device.sh BIN_DIR
# BIN_DIR holds test_cuda_adamw, test_cuda_kernels, test_cuda_model and
# bench_train built for sm_90a. Runs the GPU tests (CUDA vs the CPU twin), then
# run_bench.sh (bench_train with --profile: the per-op table of one step per
# length, then torch_train.py with and without gradient checkpointing, same
# shapes, same call). Environment: SHAPES (qwen2-1.5b), SEQS (4096,16384),
# TESTS (the test binaries to run). Logs go to $OUT when set.
set -u
B=$(cd "${1:?usage: run_step_device.sh BIN_DIR}" && pwd)
H=$(cd "$(dirname "$0")" && pwd)
O=${OUT:-$(mktemp -d)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-16} PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
stamp "gpu tests"
for t in ${TESTS:-test_cuda_adamw test_cuda_kernels test_cuda_model}; do
  [ -x "$B/$t" ] || { echo "$t: not in $B"; continue; }
  timeout 120 "$B/$t" > "$O/$t.log" 2>&1
  echo "$t: exit $?"
  grep -E "^\[  (PASSED|FAILED)|FAILED  \]|Failure|rel\. err|worst" "$O/$t.log" | head -20
done
stamp "sft step vs pytorch"
SHAPES=${SHAPES:-qwen2-1.5b} SEQS=${SEQS:-4096,16384} BENCH_TRAIN_ARGS="--profile" OUT=$O \
  bash "$H/run_bench.sh" "$B" > "$O/run_bench.log" 2>&1
grep -v '^{' "$O/run_bench.log" | grep -v '^\s*$' | tail -80
stamp "done"
