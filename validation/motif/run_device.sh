#!/usr/bin/env bash
# One device call for the Motif-architecture figures: the CUDA-vs-CPU tests
# (test_cuda_motif), temper's CPU-f64 and CUDA-bf16 dumps against the PyTorch
# reference, and the GDA vs plain attention throughput table at 4K / 16K tokens.
# Builds nothing: BUILD_DIR is a -DTEMPER_CUDA=ON build holding bench_motif and
# tests/test_cuda_motif.
#   validation/motif/run_device.sh BUILD_DIR   (logs to $OUT when set; PYTHON picks the interpreter with torch)
set -u
B=${1:?usage: run_device.sh BUILD_DIR}
H=$(cd "$(dirname "$0")" && pwd)
O=${OUT:-$(mktemp -d)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-16} PYTHONUNBUFFERED=1
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
stamp "test_cuda_motif"
T=$B/tests/test_cuda_motif; [ -x "$T" ] || T=$B/test_cuda_motif
"$T" > "$O/test_cuda_motif.log" 2>&1; echo "exit $?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|rel" "$O/test_cuda_motif.log" | head -40
for be in cpu cuda; do
  stamp "PyTorch reference vs temper $be dump"
  mkdir -p "$O/dump_$be"
  "$B/bench_motif" dump "$O/dump_$be" "$be" && ${PYTHON:-python3} "$H/torch_reference.py" "$O/dump_$be" --dtype float64 \
    | tee "$O/torch_reference_$be.log"
done
stamp "throughput: GDA vs plain attention"
"$B/bench_motif" throughput ${SEQS:-4096 16384} | tee "$O/throughput.log"
stamp "done"
