#!/usr/bin/env bash
# The scheduler tests: jobscripts/slurm.sbatch and jobscripts/pbs.pbs under a real Slurm
# (Debian's slurm-wlm, started here: tests/slurm/cluster.sh) and its PBS wrappers (slurm-wlm-torque).
#   run.sh TEMPER_BIN SOURCE_DIR WORK_DIR [scenario ...]     (default: all scenarios)
# Exit 0 all passed, 1 a scenario failed, 77 skipped (the reason is printed: not root, Slurm not
# installed, no namespaces). Everything runs in private PID/mount/network/UTS namespaces: the
# daemons and jobs die with this script whatever ends it. Waits are on job states and files with
# generous deadlines, never fixed sleeps. Scenarios (tiny decks, 1 node x 2 ranks unless said):
#   complete     a toy job runs to the end (its result is the reference for the next three)
#   preempt_usr1 scancel --batch --signal=USR1 -> checkpoint -> exit 3 -> requeue -> resume -> same result
#   preempt_term scontrol requeue (SIGTERM to every process of the job) -> checkpoint within KillWait ->
#                Slurm requeues -> resume -> same result
#   timelimit    --time=1 with run.walltime from the job's own limit: checkpoint at the margin, before
#                the kill -> requeue -> finish -> same result; never TIMEOUT
#   pbs          qsub jobscripts/pbs.pbs (mpirun): SIGTERM to the batch shell -> SIGUSR1 to mpirun ->
#                exit 3 -> qrerun; then the walltime margin -> qrerun; then the end -> same result
#   chain        SFT stage 1 -> SFT stage 2 -> RL as jobs with --dependency=afterok
#   multinode    2 nodes x 2 ranks (srun and mpirun): sp=2 and dp_shard=2 inside a node,
#                dp_replicate=2 across; losses equal one rank accumulating 2 micro-batches
set -u
temper=$1 src=$2 work=$3
shift 3
skip() { echo "slurm tests skipped: $*"; exit 77; }

if [ -z "${TEMPER_SLURM_INSIDE:-}" ]; then
  [ "$(id -u)" -eq 0 ] || skip "not root (the tests start munged, slurmctld and slurmd)"
  for c in munged slurmctld slurmd sbatch squeue scontrol scancel srun qsub qstat qrerun unshare setpriv ip mpirun; do
    command -v "$c" > /dev/null || skip "'$c' not found (jobscripts/install.sh installs slurm-wlm, munge and slurm-wlm-torque)"
  done
  unshare --pid --fork --mount-proc --net --uts true 2> /dev/null || skip "cannot create PID/mount/network/UTS namespaces"
  # The namespaces die with their first process, which unshare kills when it dies itself, which
  # the kernel kills when this shell dies (pdeathsig), whatever kills it; unshare ignores SIGTERM,
  # so a SIGTERM here (ctest's timeout) is passed on as SIGKILL.
  setpriv --pdeathsig KILL unshare --pid --fork --kill-child --mount-proc --net --uts \
    env TEMPER_SLURM_INSIDE=1 bash "$0" "$temper" "$src" "$work" "$@" &
  ns=$!
  trap 'kill -KILL $ns' TERM INT HUP
  wait $ns; status=$?
  while kill -0 $ns 2> /dev/null; do wait $ns; status=$?; done
  exit $status
fi

source "$src/tests/slurm/cluster.sh"
rm -rf "$work" && mkdir -p "$work" || exit 1
export SLURM_TEST_DIR=$work/cluster
trap 'cluster_stop' EXIT
T0=$(date +%s)
cluster_start 2 8 2 || exit 1

# the job environment: the scripts find temper and the checkout; Open MPI over the private loopback
export TEMPER=$temper TEMPER_HOME=$src OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1 TEMPER_MPIRUN_FLAGS="--bind-to none"

note() { echo "slurm-test: [$1] ${*:2}"; }
fail() { note "$1" "FAILED: ${*:2}"; failed[$1]=1; }
declare -A failed jobs

# submit NAME [sbatch options] -- script [script args]: the job id in jobs[NAME]; runs in $work/NAME
submit() {
  local name=$1 opts=() id; shift
  while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
  mkdir -p "$work/$name"
  id=$(sbatch --parsable --chdir="$work/$name" "${opts[@]}" "$@") || { fail "$name" "sbatch refused"; return 1; }
  jobs[$name]=${id%%;*}
  note "$name" "submitted job ${jobs[$name]}"
}

field() { scontrol show job -o "$1" 2> /dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
is_final() { case $(field "$1" JobState) in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) return 0 ;; esac; return 1; }
stepping() {   # stepping DIR NP: every rank's metrics file has a step line
  local r
  for ((r = 0; r < $2; ++r)); do grep -q '"step":' "$1/metrics.rank$r.jsonl" 2> /dev/null || return 1; done
}
out_of() { cat "$work/$1"/*.out "$work/$1"/*.[oe][0-9]* 2> /dev/null; }   # sbatch's, qsub's

# expect_done NAME [min restarts]: the job ended COMPLETED, exit 0, restarted at least as often as asked
expect_done() {
  local name=$1 id=${jobs[$1]} min=${2:-0}
  cluster_wait 400 is_final "$id" || { fail "$name" "job $id not finished within 400 s (state $(field "$id" JobState))"; return 1; }
  local state restarts
  state=$(field "$id" JobState) restarts=$(field "$id" Restarts)
  note "$name" "job $id: $state, exit $(field "$id" ExitCode), restarts $restarts"
  [ "$state" = COMPLETED ] || { fail "$name" "job $id ended $state"; out_of "$name" | tail -40; return 1; }
  [ "$restarts" -ge "$min" ] || { fail "$name" "job $id restarted $restarts times, expected at least $min"; return 1; }
}

same_result() {   # same_result NAME: toy_result.txt equals the uninterrupted run's
  if cmp -s "$work/$1/run/toy_result.txt" "$work/complete/run/toy_result.txt"; then
    note "$1" "final parameters equal the uninterrupted run's"
  else
    fail "$1" "final parameters differ from the uninterrupted run's"
  fi
}

signal_to_exit() {   # temper's measure (signal to its exit) and the job script's (signal to the launcher's exit)
  echo "$(out_of "$1" | grep -o 'exit status 3 (requeue) [0-9.]* s after SIG[A-Z0-9]*' | head -1);" \
       "script: $(out_of "$1" | grep -o '[a-z]* exited with status 3, [0-9.]* s after the signal' | head -1)"
}

toy=("$src/input/toy.deck" --toy.steps=600 --toy.sleep_ms=40 --checkpoint.every=0 --log.every=1000
     --checkpoint.keep_last=2 --run.output_dir=run)
one_node=(--nodes=1 --ntasks-per-node=2 --gpus-per-task=1 --cpus-per-task=1)

# ---- wave 1: the signal paths, concurrently ----------------------------------------------------
submit complete "${one_node[@]}" -- "$src/jobscripts/slurm.sbatch" "${toy[@]}"
submit preempt_usr1 "${one_node[@]}" -- "$src/jobscripts/slurm.sbatch" "${toy[@]}"
submit preempt_term "${one_node[@]}" -- "$src/jobscripts/slurm.sbatch" "${toy[@]}"
# a 1-minute limit, the margin 45 s: each run stops about 15 s after its start; --signal later than that
submit timelimit "${one_node[@]}" --time=1 --signal=B:USR1@5 -- "$src/jobscripts/slurm.sbatch" "${toy[@]}" \
  --run.walltime_margin=45
mkdir -p "$work/pbs"
pbs_id=$(cd "$work/pbs" && DECK=$src/input/toy.deck TEMPER_ARGS="${toy[*]:1} --run.walltime_margin=45" \
  qsub -V -r y -l select=1:ncpus=2:mpiprocs=2,walltime=00:01:00 "$src/jobscripts/pbs.pbs") \
  && jobs[pbs]=$pbs_id && note pbs "qsub: job $pbs_id" || fail pbs "qsub refused: $pbs_id"

# each signal as soon as the job's ranks are stepping (every rank's metrics file has a step)
signal_when_stepping() {   # NAME COMMAND...
  local name=$1; shift
  [ -n "${jobs[$name]:-}" ] || return
  if cluster_wait 300 stepping "$work/$name/run" 2; then
    note "$name" "$*"; "$@" || fail "$name" "'$*' failed"
  else
    fail "$name" "the ranks did not start stepping within 300 s"
  fi
}
signal_when_stepping preempt_usr1 scancel --batch --signal=USR1 "${jobs[preempt_usr1]}"
signal_when_stepping preempt_term scontrol requeue "${jobs[preempt_term]}"
signal_when_stepping pbs scancel --batch --signal=TERM "${jobs[pbs]:-}"   # PBS's SIGTERM, as the batch shell sees it

expect_done complete 0 && same_result complete > /dev/null
for name in preempt_usr1 preempt_term; do
  [ -z "${failed[$name]:-}" ] || continue
  expect_done "$name" 1 && same_result "$name"
  note "$name" "$(signal_to_exit "$name")"
  out_of "$name" | grep -q 'checkpoint written' || fail "$name" "no checkpoint in the job output"
  out_of "$name" | grep -q 'resuming from' || fail "$name" "the requeued run did not resume"
done
out_of preempt_usr1 | grep -q 'received SIGUSR1; asking the run to checkpoint' || fail preempt_usr1 "the batch shell did not see SIGUSR1"
out_of preempt_usr1 | grep -q 'requeueing job' || fail preempt_usr1 "the script did not requeue"
out_of preempt_term | grep -q 'signal received (SIG' || fail preempt_term "the ranks did not stop on the requeue's SIGTERM"

if expect_done timelimit 1; then
  same_result timelimit
  out_of timelimit | grep -q 'walltime margin reached' || fail timelimit "no stop at the walltime margin"
  out_of timelimit | grep -q 'DUE TO TIME LIMIT' && fail timelimit "the job hit its time limit"
  note timelimit "run.walltime passed: $(out_of timelimit | grep -o -- '--run.walltime=[0-9]*' | tr '\n' ' ')"
fi
if [ -n "${jobs[pbs]:-}" ] && expect_done pbs 2; then
  same_result pbs
  out_of pbs | grep -q 'received SIGTERM; asking the run to checkpoint (SIGUSR1 to the mpirun' || fail pbs "SIGTERM not forwarded as SIGUSR1"
  out_of pbs | grep -q 'walltime margin reached' || fail pbs "no stop at the walltime margin"
  [ "$(out_of pbs | grep -c 'requeueing job .* with qrerun')" -ge 2 ] || fail pbs "fewer than two requeues"
  note pbs "$(signal_to_exit pbs)"
fi
note wave1 "done after $(( $(date +%s) - T0 )) s"

# ---- wave 2: the SFT -> SFT -> RL chain and the 2-node meshes -----------------------------------
data=$work/data
"$temper" generate-tasks --out "$data" --seed 5 --train 160 --eval 8 > /dev/null || fail chain "generate-tasks failed"
tiny=(--model.d_model=32 --model.n_layers=2 --model.n_heads=2 --model.n_kv_heads=1 --model.ffn_dim=64
      --data.seq_len=96 --data.micro_batch=2 --sft.warmup_steps=2 --log.every=1 --checkpoint.keep_last=2)
sft=("$src/input/quickstart.deck" "${tiny[@]}" --data.train_files="$data/sft_train.jsonl" --data.eval_file=)
submit chain_sft1 "${one_node[@]}" -- "$src/jobscripts/slurm.sbatch" "${sft[@]}" --sft.steps=6 \
  --run.output_dir=stage1
submit chain_sft2 "${one_node[@]}" --dependency=afterok:${jobs[chain_sft1]} -- "$src/jobscripts/slurm.sbatch" \
  "${sft[@]}" --sft.steps=4 --sft.lr=1e-3 --model.init="$work/chain_sft1/stage1/checkpoints" --run.output_dir=stage2
submit chain_rl "${one_node[@]}" --dependency=afterok:${jobs[chain_sft2]} -- "$src/jobscripts/slurm.sbatch" \
  "$src/input/quickstart_rl.deck" --model.init="$work/chain_sft2/stage2/checkpoints" --run.output_dir=rl \
  --rl.prompts_file="$data/rl_prompts.jsonl" --rl.eval_file= --rl.steps=2 --rl.prompts_per_step=4 --rl.group_size=4 \
  --rl.max_new_tokens=12 --rl.filter=false --rl.dump_every=0 --rl.eval_every=0 --log.every=1

# the references for the meshes, outside Slurm: one rank accumulating as many micro-batches as the
# mesh has data-parallel ranks (sp 2 x dp_replicate 2: 2; dp_shard 2 x dp_replicate 2: 4)
for acc in 2 4; do
  "$temper" "${sft[@]}" --sft.steps=3 --sft.grad_accum=$acc --checkpoint.every=0 --checkpoint.resume=never \
    --run.output_dir="$work/mesh_ref$acc" > "$work/mesh_ref$acc.log" 2>&1 || fail multinode "the 1-rank reference failed"
done
two_nodes=(--nodes=2 --ntasks-per-node=2 --gpus-per-task=1 --cpus-per-task=1)
submit multinode_sp "${two_nodes[@]}" -- "$src/jobscripts/slurm.sbatch" "${sft[@]}" --sft.steps=3 \
  --parallel.sp=2 --checkpoint.every=0 --run.output_dir=run
TEMPER_LAUNCHER=mpirun submit multinode_shard "${two_nodes[@]}" -- "$src/jobscripts/slurm.sbatch" "${sft[@]}" \
  --sft.steps=3 --parallel.dp_shard=2 --checkpoint.every=0 --run.output_dir=run

for name in chain_sft1 chain_sft2 chain_rl; do expect_done "$name" 0 || failed[chain]=1; done
if [ -z "${failed[chain]:-}" ]; then
  s1_end=$(date -d "$(field "${jobs[chain_sft1]}" EndTime)" +%s) s2_start=$(date -d "$(field "${jobs[chain_sft2]}" StartTime)" +%s)
  s2_end=$(date -d "$(field "${jobs[chain_sft2]}" EndTime)" +%s) rl_start=$(date -d "$(field "${jobs[chain_rl]}" StartTime)" +%s)
  [ "$s2_start" -ge "$s1_end" ] && [ "$rl_start" -ge "$s2_end" ] || fail chain "a stage started before the one it depends on ended"
  out_of chain_sft2 | grep -q "chain_sft1/stage1/checkpoints" || fail chain "stage 2 did not start from stage 1's checkpoint"
  out_of chain_rl | grep -q "chain_sft2/stage2/checkpoints" || fail chain "RL did not start from stage 2's checkpoint"
  ls "$work"/chain_rl/rl/checkpoints/*.h5 > /dev/null 2>&1 || fail chain "RL wrote no checkpoint"
  [ -z "${failed[chain]:-}" ] && note chain "SFT stage 1 -> stage 2 -> RL ran in order, each from the previous checkpoint"
fi

declare -A ref=([multinode_sp]=2 [multinode_shard]=4)
for name in multinode_sp multinode_shard; do
  expect_done "$name" 0 || { failed[multinode]=1; continue; }
  map=$(out_of "$name" | grep -A6 '^.*mesh: ')
  echo "$map" | sed 's/^/    /'
  echo "$map" | grep -q '2 node(s) × 2 ranks' || fail multinode "$name: the mesh did not see 2 nodes x 2 ranks"
  # node 0 is host n1, node 1 host n2: the rank map's node column agrees with the hosts
  echo "$map" | awk '$NF ~ /^n[12]$/ { if (("n" ($3 + 1)) != $NF) bad = 1; seen++ } END { exit !(seen == 4 && !bad) }' \
    || fail multinode "$name: ranks_per_node disagrees with the hosts"
  python3 - "$work/mesh_ref${ref[$name]}/metrics.rank0.jsonl" "$work/$name/run/metrics.rank0.jsonl" << 'EOF' || fail multinode "$name: losses differ from one rank's"
import json, sys
def losses(p): return [json.loads(l)["loss"] for l in open(p) if '"step"' in l]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
print("    losses 1 rank:", a, "\n    losses 2 x 2 :", b)
sys.exit(0 if len(a) == len(b) == 3 and all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)) else 1)
EOF
done

# ---- summary ------------------------------------------------------------------------------------
all=(complete preempt_usr1 preempt_term timelimit pbs chain multinode)
n_fail=0
for name in "${all[@]}"; do
  if [ -n "${failed[$name]:-}" ]; then n_fail=$((n_fail + 1)); note "$name" "FAIL"; else note "$name" "ok"; fi
done
note total "$(( $(date +%s) - T0 )) s"
if [ "$n_fail" -gt 0 ]; then cluster_dump_logs; fi
echo "slurm: $(( ${#all[@]} - n_fail )) passed, $n_fail failed"
[ "$n_fail" -eq 0 ]
