#!/usr/bin/env bash
# Every GPU check of a session in one device call (builds nothing): all GPU tests
# (CUDA vs CPU twins), the attention kernel variants (TEMPER_ATTN_FWD/BWD), the
# Motif figures (validation/motif/run_device.sh), the HF export check against
# transformers, and the planned vs measured peak at 64K.
#   validation/bench/run_device_all.sh BIN_DIR     (logs to $OUT; BIN_DIR holds temper, bench_*, test_*)
set -u
B=$(cd "${1:?usage: run_device_all.sh BIN_DIR}" && pwd)
H=$(cd "$(dirname "$0")/../.." && pwd)
O=${OUT:-$(mktemp -d)}
W=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-16} PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
stamp "gpu tests"
for t in "$B"/test_cuda_*; do
  echo "== $(basename "$t")"
  timeout 300 "$t" 2>&1 | grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|rel err|loss cpu|Expected|Which is|actual|max" | head -24
done 2>&1 | tee "$O/gpu_tests.log"
stamp "attention variants"
timeout 200 bash "$H/validation/bench/run_attention.sh" "$B" 4096 16384 2>&1 | tee "$O/attention_variants.log"
stamp "motif"
OUT=$W PYTHON=python3 timeout 200 bash "$H/validation/motif/run_device.sh" "$B" 2>&1 | grep -v "^RESULT" | tail -45 \
  | tee "$O/motif.log"
stamp "hf export vs transformers"
( TEMPER_HF_EXPORT_KEEP=$W/exp timeout 120 "$B/test_hf_checkpoint" --gtest_filter='*ExportSubcommand*' | tail -2
  timeout 120 python3 "$H/validation/hf/check_export.py" "$W/exp" --device cuda ) 2>&1 | tee "$O/hf_export.log"
stamp "plan vs measured, 1.5B at 64K, full checkpointing"
timeout 150 "$B/bench_train" --backend cuda --shapes qwen2-1.5b --seqs 65536 --warmup 0 --steps 1 \
  --checkpointing full --memory 2>&1 | grep -vE "^\{" | tail -16 | tee "$O/plan_64k.log"
stamp "muon step cost"
timeout 100 "$B/bench_muon" --backend cuda --shape qwen2-1.5b --seq 16384 2>&1 | tail -8 | tee "$O/muon.log"
stamp "done"
