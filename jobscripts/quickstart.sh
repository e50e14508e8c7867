#!/usr/bin/env bash
# README command 1: install, build, generate the synthetic tasks, and run the
# quickstart decks under mpirun on 2 CPU cores: SFT of a tiny model
# (input/quickstart.deck), then GRPO from its checkpoint (input/quickstart_rl.deck),
# then the RL plots (postproc/plot_rl.py). SKIP_RL=1 stops after SFT.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/jobscripts/install.sh" "$here/build"
cd "$here"
mpirun_flags=(--oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && mpirun_flags+=(--allow-run-as-root)
NP=${NP:-2}
./build/temper generate-tasks --out runs/quickstart/data --seed 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mpirun "${mpirun_flags[@]}" -np "$NP" ./build/temper input/quickstart.deck "$@"
echo "quickstart: SFT results in $here/runs/quickstart (metrics.rank*.jsonl, checkpoints/, eval_*.jsonl)"
[ "${SKIP_RL:-0}" = 1 ] && exit 0
mpirun "${mpirun_flags[@]}" -np "$NP" ./build/temper input/quickstart_rl.deck
/usr/bin/python3 postproc/plot_rl.py --metrics runs/quickstart_rl/metrics.rank0.jsonl \
    --dumps runs/quickstart_rl/trajectories/rank0 --out runs/quickstart_rl/plots
echo "quickstart: RL results in $here/runs/quickstart_rl (metrics, trajectories/, difficulty_filter/, plots/*.png)"
