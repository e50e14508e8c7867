#!/usr/bin/env bash
# One device call for issue 19's attention figures (builds nothing):
#   validation/attention/run_device.sh BIN_DIR [tests] [attention] [sft]
# BIN_DIR holds test_cuda_attention, test_cuda_motif, test_cuda_model,
# bench_attention and bench_train built on the CUDA machine image (sm_90a,
# linked against cuDNN 9 by soname). Steps (default: all):
#   tests      the GPU tests (CUDA vs the CPU twin; v3 = cuDNN included)
#   attention  run_attention.sh: v1/v2/v3 vs PyTorch SDPA, fwd/bwd TFLOP/s
#   sft        run_bench.sh: SFT step, bench_train vs torch_train.py
# If the binaries' run path has no libcudnn.so.9, the first one found on the
# machine is used through LD_LIBRARY_PATH for temper's binaries ONLY (wrappers
# in a temporary folder), so PyTorch keeps its own cuDNN. Logs go to $OUT.
set -u
B=$(cd "${1:?usage: run_device.sh BIN_DIR [steps]}" && pwd)
shift
WHAT=${*:-tests attention sft}  # (not STEPS: run_bench.sh reads that)
H=$(cd "$(dirname "$0")/.." && pwd)
O=${OUT:-$(mktemp -d)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-16} PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'
W=$B
if ldd "$B/bench_attention" | grep -q 'libcudnn.so.9 => not found'; then
  lib=$(ls /usr/local/cuda*/lib*/libcudnn.so.9 /usr/lib/x86_64-linux-gnu/libcudnn.so.9 \
        $(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__path__[0] + "/lib/x"))' 2>/dev/null)/libcudnn.so.9 \
        2>/dev/null | head -1)
  [ -n "$lib" ] || { echo "no libcudnn.so.9 on this machine"; exit 1; }
  dir=$(dirname "$lib")
  W=$(mktemp -d)
  for f in "$B"/*; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s "$@"\n' "$dir" "$f" > "$W/$(basename "$f")"
    chmod +x "$W/$(basename "$f")"
  done
  echo "cuDNN for temper: $dir (run path had none)"
else
  echo "cuDNN for temper: $(ldd "$B/bench_attention" | grep libcudnn.so.9)"
fi
for s in $WHAT; do
  case $s in
    tests)
      stamp "gpu tests"
      for t in test_cuda_attention test_cuda_motif test_cuda_model; do
        [ -x "$W/$t" ] || continue
        TEMPER_CUDNN_VERBOSE=1 timeout 240 "$W/$t" > "$O/$t.log" 2>&1
        echo "$t: exit $?"; grep -E "^\[  (PASSED|FAILED)|FAILED  \]|refused|failed to|unavailable" "$O/$t.log" | head -20
        [ "$t" = test_cuda_attention ] || continue
        # the ragged graph alone (the dense single-document graph is the default since 2026-12-04)
        TEMPER_CUDNN_DENSE=0 TEMPER_CUDNN_VERBOSE=1 timeout 240 "$W/$t" > "$O/$t.ragged.log" 2>&1
        echo "$t (TEMPER_CUDNN_DENSE=0): exit $?"
        grep -E "^\[  (PASSED|FAILED)|FAILED  \]|refused|failed to|unavailable|dense" "$O/$t.ragged.log" | head -20
      done ;;
    attention)
      stamp "attention vs sdpa"
      bash "$H/bench/run_attention.sh" "$W" > "$O/attention.log" 2>&1; cat "$O/attention.log"
      echo "v3 with the ragged graph alone (TEMPER_CUDNN_DENSE=0):"
      TEMPER_CUDNN_DENSE=0 BENCH_ATTN_VARIANTS=3 "$W/bench_attention" 2>&1 | tee "$O/attention_ragged.log" | grep -v '^RESULT' ;;
    sft)
      stamp "sft step vs pytorch"
      OUT=$O bash "$H/bench/run_bench.sh" "$W" > "$O/run_bench.log" 2>&1; tail -14 "$O/run_bench.log" ;;
  esac
done
stamp "done"
