#!/usr/bin/env bash
# README command 1: install, build, generate the synthetic tasks, and run the
# quickstart deck under mpirun (SFT of a tiny model on 2 CPU cores).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/jobscripts/install.sh" "$here/build"
cd "$here"
mpirun_flags=(--oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && mpirun_flags+=(--allow-run-as-root)
NP=${NP:-2}
./build/temper generate-tasks --out runs/quickstart/data --seed 1
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} mpirun "${mpirun_flags[@]}" -np "$NP" ./build/temper input/quickstart.deck "$@"
echo "quickstart: results in $here/runs/quickstart (metrics.rank*.jsonl, checkpoints/, eval_*.jsonl)"
