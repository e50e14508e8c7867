#!/usr/bin/env bash
# CPU throughput of the quickstart SFT deck (input/quickstart.deck, 1 rank, the deck's model and batch)
# on the Kokkos backend next to the CPU backend, measured in the same run and interleaved
# (cpu, kokkos, cpu, kokkos, ...) so that load from other processes hits both alike. Prints, per run,
# the training tokens/s over steps 3..STEPS (wall clock, from metrics.rank0.jsonl: steps 1-2 are
# warm-up), the tokens of all steps per CPU second of the whole process (user + sys: on a machine
# shared with other work this is the steadier figure; both backends run one thread), and the final
# loss; then the medians per backend and the ratios.
#
#   validation/kokkos/run_quickstart.sh [BUILD_DIR=build] [STEPS=12] [ROUNDS=2]
# Needs a build with the Kokkos backend (configure prints "temper: Kokkos backend ON").
# OMP_NUM_THREADS (default 1) applies to the CPU backend; Debian's Kokkos runs the Serial space.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build}
steps=${2:-12}
rounds=${3:-2}
bin=$build/temper
[ -x "$bin" ] || { echo "run_quickstart: no temper binary at $bin" >&2; exit 2; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d "${TMPDIR:-/tmp}/temper_kokkos_qs.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bin" generate-tasks --out "$work/data" --seed 1 >/dev/null
# nproc --all: plain nproc honours OMP_NUM_THREADS
echo "# quickstart SFT, 1 rank, $steps steps per run, OMP_NUM_THREADS=$OMP_NUM_THREADS, $(nproc --all) cores," \
     "$(date -u +%FT%TZ), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
     "$("$bin" --version 2>/dev/null | head -1)"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-6s %12s %14s %10s\n' backend round "tokens/s" "tokens/CPU-s" "last loss"
declare -A rates cpurates
for r in $(seq 1 "$rounds"); do
  for b in cpu kokkos; do
    out=$work/run_${b}_$r
    /usr/bin/time -f "%U %S" -o "$out.cpu" "$bin" "$here/input/quickstart.deck" --run.backend=$b \
      --run.output_dir="$out" --data.train_files="$work/data/sft_train.jsonl" --data.eval_file= \
      --sft.steps="$steps" --checkpoint.every=0 --checkpoint.keep_last=0 --log.every=1 >"$out.log" 2>&1 ||
      { echo "run_quickstart: $b run failed:" >&2; tail -20 "$out.log" >&2; exit 1; }
    line=$(python3 - "$out/metrics.rank0.jsonl" "$out.cpu" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"step"')]
a, b = rows[1], rows[-1]          # from the end of step 2 to the end of the last step
tok = sum(r["tokens"] for r in rows[2:])
user, sys_ = map(float, open(sys.argv[2]).read().split()[-2:])
print(f"{tok / (b['time'] - a['time']):.1f} {sum(r['tokens'] for r in rows) / (user + sys_):.1f} {rows[-1]['loss']:.5f}")
PY
)
    set -- $line
    rates[$b]="${rates[$b]:-} $1"
    cpurates[$b]="${cpurates[$b]:-} $2"
    printf '%-8s %-6s %12s %14s %10s\n' "$b" "$r" "$1" "$2" "$3"
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "${rates[cpu]}" "${rates[kokkos]}" "${cpurates[cpu]}" "${cpurates[kokkos]}" <<'PY'
import statistics, sys
m = [statistics.median(map(float, a.split())) for a in sys.argv[1:]]
print(f"median tokens/s (wall, steps 3..): cpu {m[0]:.0f}, kokkos {m[1]:.0f}, kokkos/cpu {m[1] / m[0]:.3f}")
print(f"median tokens per CPU second (whole process): cpu {m[2]:.0f}, kokkos {m[3]:.0f}, kokkos/cpu {m[3] / m[2]:.3f}")
PY
