#!/usr/bin/env bash
# SFT step throughput, temper vs PyTorch + transformers, in one go (builds nothing):
#   validation/bench/run_bench.sh BUILD_DIR
# Runs BUILD_DIR/bench_train and torch_train.py for qwen2-0.5b and qwen2-1.5b at
# 4K and 16K tokens (PyTorch at 16K also with gradient checkpointing), then
# prints one markdown table with the temper / PyTorch tokens/s ratio. With $OUT
# set, the table and the raw logs are written there. About 5-8 minutes on an H100.
# Environment: WARMUP (2), STEPS (5), PYTHON (python3), SHAPES, SEQS,
# BENCH_TRAIN_ARGS (more bench_train arguments, e.g. --profile).
set -uo pipefail
BUILD=${1:?usage: run_bench.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
WARMUP=${WARMUP:-2}
STEPS=${STEPS:-5}
SHAPES=${SHAPES:-qwen2-0.5b,qwen2-1.5b}
SEQS=${SEQS:-4096,16384}
LONGEST=${SEQS##*,}
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT

[ -x "$BUILD/bench_train" ] || { echo "run_bench.sh: $BUILD/bench_train not found (build the bench_train target)"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'

echo "== temper"
"$BUILD/bench_train" --backend cuda --shapes "$SHAPES" --seqs "$SEQS" --warmup "$WARMUP" --steps "$STEPS" \
  ${BENCH_TRAIN_ARGS:-} 2>&1 | tee "$LOG/temper.log"
echo "== pytorch"
"$PY" "$HERE/torch_train.py" --shapes "$SHAPES" --seqs "$SEQS" --warmup "$WARMUP" --steps "$STEPS" \
  2>&1 | tee "$LOG/torch.log"
echo "== pytorch, gradient checkpointing"
"$PY" "$HERE/torch_train.py" --shapes "$SHAPES" --seqs "$LONGEST" --warmup "$WARMUP" --steps "$STEPS" \
  --checkpointing 2>&1 | tee "$LOG/torch_ckpt.log"

"$PY" - "$LOG" <<'PYEOF' | tee "$LOG/table.md"
import json, sys, os
rows = []
for name in ("temper.log", "torch.log", "torch_ckpt.log"):
    for line in open(os.path.join(sys.argv[1], name)):
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
key = lambda r: (r["shape"], r["seq"])
temper = {key(r): r for r in rows if r["impl"] == "temper"}
def fmt(r, f, scale=1.0, nd=0):
    return "" if r is None or r["status"] != "ok" or r.get(f, -1) is None or r.get(f, -1) < 0 else f"{r[f] * scale:.{nd}f}"
print("| shape | seq | implementation | tokens/s | step ms | MFU % | peak GiB | init loss | temper / this |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for k in sorted({key(r) for r in rows}, key=lambda k: (k[0], k[1])):
    t = temper.get(k)
    for r in [x for x in rows if key(x) == k]:
        ok = r["status"] == "ok"
        ratio = ""
        if r["impl"] != "temper" and ok and t is not None and t["status"] == "ok" and r["tokens_per_s"] > 0:
            ratio = f"{t['tokens_per_s'] / r['tokens_per_s']:.2f}x"
        tps = fmt(r, "tokens_per_s") if ok else r["status"]
        print(f"| {k[0]} | {k[1]} | {r['impl']} | {tps} | {fmt(r, 'step_ms', nd=1)} | {fmt(r, 'mfu', 100, 1)} | "
              f"{fmt(r, 'peak_gib', nd=2)} | {fmt(r, 'loss', nd=3)} | {ratio} |")
PYEOF
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$LOG/table.md" "$OUT/bench_train.md"
  cat "$LOG/temper.log" "$LOG/torch.log" "$LOG/torch_ckpt.log" > "$OUT/bench_train.log"
fi
