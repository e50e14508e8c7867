#!/usr/bin/env bash
# One device call for issue-7 figures: GPU tests (CUDA vs CPU twins), the attention
# benchmark vs SDPA, the SFT step benchmark vs PyTorch (run_bench.sh), and rollout
# throughput vs HF generate. Builds nothing: BUILD_DIR holds temper's binaries
# (test_cuda_*, bench_attention, bench_train, bench_rollout).
#   validation/bench/run_device.sh BUILD_DIR        (writes logs to $OUT when set)
set -u
B=${1:?usage: run_device.sh BUILD_DIR}
H=$(cd "$(dirname "$0")" && pwd)
O=${OUT:-$(mktemp -d)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-16} PYTHONUNBUFFERED=1
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
stamp "gpu tests"
for t in test_cuda_kernels test_cuda_attention test_cuda_generation; do
  [ -x "$B/$t" ] && "$B/$t" 2>&1 | tail -3 | tee -a "$O/gpu_tests.log"
done
stamp "attention vs sdpa"
bash "$H/run_attention.sh" "$B" > "$O/attention.log" 2>&1; tail -9 "$O/attention.log"
stamp "rollout"
"$B/bench_rollout" --backend cuda --shapes "${ROLLOUT_SHAPES:-qwen2-1.5b}" --batches 64,256 > "$O/rollout.log" 2>&1
python3 "$H/torch_generate.py" --shapes "${ROLLOUT_SHAPES:-qwen2-1.5b}" --batches 64,256 >> "$O/rollout.log" 2>&1
grep -v "^JSON" "$O/rollout.log" | grep "|"
stamp "sft step vs pytorch"
OUT=$O bash "$H/run_bench.sh" "$B" > "$O/run_bench.log" 2>&1; tail -12 "$O/run_bench.log"
stamp "done"
