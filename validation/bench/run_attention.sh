#!/bin/bash
# Runs temper's attention benchmark and the PyTorch SDPA reference on the same
# shapes and prints temper / SDPA TFLOP/s ratios. Builds nothing.
# Usage: validation/bench/run_attention.sh BUILD_DIR [seq ...]
#   BUILD_DIR holds bench_attention (ninja -C BUILD_DIR bench_attention); python3
#   must have torch with CUDA. Extra arguments pick the sequence lengths.
set -u
if [ $# -lt 1 ] || [ ! -x "$1/bench_attention" ]; then
  echo "usage: $0 BUILD_DIR [seq ...]   (BUILD_DIR/bench_attention must exist)" >&2
  exit 2
fi
build=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$build/bench_attention" "$@" | tee "$tmp/temper.txt" | grep -v '^RESULT'
echo
PYTHONUNBUFFERED=1 python3 "$here/attention_sdpa.py" "$@" | tee "$tmp/sdpa.txt" | grep -v '^RESULT'
echo
echo "ratio temper / SDPA (TFLOP/s; > 1 means temper is faster)"
printf '%-11s %6s %-9s | %7s %7s %7s\n' model seq kernel fwd bwd 'f+b'
awk '$1 == "RESULT" && $2 == "sdpa" { f[$3" "$4] = $5; b[$3" "$4] = $6; fb[$3" "$4] = $7 }
     END { while ((getline line < T) > 0) { split(line, a, " ");
             if (a[1] != "RESULT") continue; key = a[3]" "a[4];
             if (!(key in f)) continue;
             printf "%-11s %6s %-9s | %7.2f %7.2f %7.2f\n", a[3], a[4], a[2], a[5] / f[key], a[6] / b[key], a[7] / fb[key] } }' \
  T="$tmp/temper.txt" "$tmp/sdpa.txt"
