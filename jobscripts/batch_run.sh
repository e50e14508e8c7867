# The launch, signal and requeue logic shared by jobscripts/slurm.sbatch and jobscripts/pbs.pbs
# (sourced by them; run `bash jobscripts/batch_run.sh --selftest` to check the parsers).
#
#   batch_run slurm|pbs DECK [--key=value ...]
#
# 1. Layout: nodes and ranks per node from the scheduler (SLURM_JOB_NUM_NODES/SLURM_NTASKS, or
#    PBS_NODEFILE; under Slurm's PBS wrappers, which set no PBS_NODEFILE, one is written from
#    SLURM_JOB_NODELIST). temper gets --parallel.ranks_per_node; sp and dp_shard come from the
#    deck and must tile a node, dp_replicate = 0 fills the rest (across nodes).
# 2. Time: what the allocation has left (squeue %L, or qstat -f's walltime) goes to
#    --run.walltime, so temper checkpoints on its own run.walltime_margin before the end.
# 3. Launch in the background and wait (bash runs a trap only between commands): srun (Slurm,
#    TEMPER_LAUNCHER=srun, the default there) or mpirun (PBS; Slurm with TEMPER_LAUNCHER=mpirun).
# 4. Signals: the batch shell traps SIGUSR1, SIGUSR2 and SIGTERM and sends SIGUSR1 to the
#    launcher. srun and Open MPI's mpirun forward SIGUSR1 to every rank; SIGTERM is never sent
#    to mpirun: Open MPI 4.1's mpirun does not forward SIGTERM, it terminates the job itself
#    (SIGTERM to the ranks about 1 s later, SIGKILL 1 s after that, exit status 1). temper
#    checkpoints at the next step boundary and exits 3.
# 5. Exit 3 (checkpoint written): requeue (scontrol requeue / qrerun); the next run resumes
#    with --checkpoint.resume=auto. Any other status ends the job with that status.
#
# Environment: TEMPER (the executable, default $TEMPER_HOME/build/temper), TEMPER_LAUNCHER (srun|mpirun),
# TEMPER_SRUN_FLAGS (default --mpi=pmix), TEMPER_MPIRUN_FLAGS (extra mpirun flags),
# TEMPER_NO_REQUEUE=1 (exit 3 without requeueing, for a wrapper that resubmits).

batch_log() { echo "temper-batch: $(date '+%F %T') $*"; }

# "[days-]hours:minutes:seconds", "minutes:seconds", "seconds" -> seconds; nothing for
# UNLIMITED, NOT_SET, INVALID and the like
batch_seconds() {
  local t=$1 days=0 h=0 m=0 s=0
  [[ $t =~ ^[0-9]+(-[0-9]+)?(:[0-9]+){0,2}$ ]] || return 0
  if [[ $t == *-* ]]; then days=${t%%-*}; t=${t#*-}; fi
  IFS=: read -r -a parts <<< "$t"
  case ${#parts[@]} in
    1) if [[ $1 == *-* ]]; then h=${parts[0]}; else s=${parts[0]}; fi ;;   # "D-H" or "S"
    2) if [[ $1 == *-* ]]; then h=${parts[0]}; m=${parts[1]}; else m=${parts[0]}; s=${parts[1]}; fi ;;
    3) h=${parts[0]}; m=${parts[1]}; s=${parts[2]} ;;
  esac
  echo $(( ((10#$days * 24 + 10#$h) * 60 + 10#$m) * 60 + 10#$s ))
}

# Seconds the allocation has left, or nothing when unlimited or unknown.
batch_time_left() {
  case $1 in
    slurm) batch_seconds "$(squeue -h -j "$SLURM_JOB_ID" -o %L 2>/dev/null)" ;;
    pbs)
      local f wall used
      f=$(qstat -f "$PBS_JOBID" 2>/dev/null) || return 0
      wall=$(batch_seconds "$(awk -F' = ' '/Resource_List.walltime/ {print $2; exit}' <<< "$f")")
      used=$(batch_seconds "$(awk -F' = ' '/resources_used.walltime/ {print $2; exit}' <<< "$f")")
      [ -n "$wall" ] && [ "$wall" -gt 0 ] && echo $(( wall - ${used:-0} )) ;;
  esac
}

# Sets batch_nodes, batch_rpn, batch_ranks (and batch_nodefile for pbs); fails on unequal nodes.
batch_layout() {
  case $1 in
    slurm)
      batch_nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
      batch_ranks=${SLURM_NTASKS:-$batch_nodes} ;;
    pbs)
      batch_nodefile=${PBS_NODEFILE:-}
      if [ -z "$batch_nodefile" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then   # Slurm's PBS wrappers
        local per=$(( ${SLURM_NTASKS:-1} / ${SLURM_JOB_NUM_NODES:-1} )) host i
        batch_nodefile=${TMPDIR:-/tmp}/temper_nodefile.${PBS_JOBID:-$SLURM_JOB_ID}
        for host in $(scontrol show hostnames "$SLURM_JOB_NODELIST"); do
          for ((i = 0; i < per; ++i)); do echo "$host"; done
        done > "$batch_nodefile"
      fi
      [ -s "$batch_nodefile" ] || { batch_log "error: no PBS_NODEFILE"; return 2; }
      batch_ranks=$(grep -c . "$batch_nodefile")
      batch_nodes=$(grep . "$batch_nodefile" | sort -u | wc -l)
      local counts
      counts=$(grep . "$batch_nodefile" | sort | uniq -c | awk '{print $1}' | sort -u)
      [ "$(wc -l <<< "$counts")" -eq 1 ] || { batch_log "error: $batch_nodefile lists unequal ranks per node"; return 2; } ;;
  esac
  if [ $(( batch_ranks % batch_nodes )) -ne 0 ]; then
    batch_log "error: $batch_ranks ranks do not divide evenly over $batch_nodes nodes"; return 2
  fi
  batch_rpn=$(( batch_ranks / batch_nodes ))
}

batch_forward() {   # trap handler: the scheduler's signal reaches the ranks as SIGUSR1
  batch_signal_at=${batch_signal_at:-$(date +%s.%N)}
  batch_log "received SIG$1; asking the run to checkpoint (SIGUSR1 to the $batch_launcher, pid $batch_pid)"
  [ -n "${batch_pid:-}" ] && kill -USR1 "$batch_pid" 2>/dev/null
}

batch_requeue() {
  if [ "${TEMPER_NO_REQUEUE:-0}" = 1 ]; then batch_log "checkpoint written; not requeueing (TEMPER_NO_REQUEUE=1)"; return; fi
  case $1 in
    slurm) batch_log "checkpoint written; requeueing job $SLURM_JOB_ID"
           scontrol requeue "$SLURM_JOB_ID" || batch_log "scontrol requeue failed: resubmit this script to resume" ;;
    pbs)   batch_log "checkpoint written; requeueing job $PBS_JOBID with qrerun"
           qrerun "$PBS_JOBID" && return
           # Slurm's PBS wrappers (Debian 12, slurm-wlm-torque 22.05): qrerun calls Slurm::requeue
           # without the state argument it needs and always fails; requeue through Slurm itself
           if [ -n "${SLURM_JOB_ID:-}" ] && scontrol requeue "$SLURM_JOB_ID"; then
             batch_log "qrerun failed; requeued with scontrol requeue $SLURM_JOB_ID"
           else
             batch_log "qrerun failed: resubmit this script to resume"
           fi ;;
  esac
}

batch_run() {
  local sched=$1 deck=$2; shift 2
  local temper=${TEMPER:-${TEMPER_HOME:-.}/build/temper} left
  batch_layout "$sched" || return $?
  left=$(batch_time_left "$sched")
  batch_launcher=${TEMPER_LAUNCHER:-$([ "$sched" = slurm ] && echo srun || echo mpirun)}
  local args=("$deck" --checkpoint.resume=auto --parallel.ranks_per_node="$batch_rpn")
  [ -n "$left" ] && args+=(--run.walltime="$left")
  args+=("$@")
  local cmd
  case $batch_launcher in
    srun) read -r -a cmd <<< "srun ${TEMPER_SRUN_FLAGS:---mpi=pmix}" ;;
    mpirun)
      cmd=(mpirun -np "$batch_ranks" --map-by "ppr:$batch_rpn:node" -x NCCL_NVLS_ENABLE -x OMP_NUM_THREADS)
      [ "$sched" = pbs ] && cmd+=(--hostfile "$batch_nodefile")
      [ "$(id -u)" -eq 0 ] && cmd+=(--allow-run-as-root)
      local extra; read -r -a extra <<< "${TEMPER_MPIRUN_FLAGS:-}"; cmd+=("${extra[@]}") ;;
    *) batch_log "error: TEMPER_LAUNCHER must be srun or mpirun, not '$batch_launcher'"; return 2 ;;
  esac
  batch_log "job ${SLURM_JOB_ID:-${PBS_JOBID:-?}} run $(( ${SLURM_RESTART_COUNT:-0} + 1 )): $batch_nodes node(s) x" \
            "$batch_rpn rank(s), ${left:-unlimited} s left; $batch_launcher $temper ${args[*]}"
  batch_pid= batch_signal_at=
  trap 'batch_forward USR1' USR1
  trap 'batch_forward USR2' USR2
  trap 'batch_forward TERM' TERM
  "${cmd[@]}" "$temper" "${args[@]}" &
  batch_pid=$!
  local status
  wait "$batch_pid"; status=$?
  while kill -0 "$batch_pid" 2>/dev/null; do wait "$batch_pid"; status=$?; done  # a trap ends wait early
  trap - USR1 USR2 TERM
  local after=
  [ -n "$batch_signal_at" ] && after=$(awk -v a="$batch_signal_at" -v b="$(date +%s.%N)" 'BEGIN { printf ", %.1f s after the signal", b - a }')
  batch_log "$batch_launcher exited with status $status$after"
  [ "$status" -eq 3 ] && batch_requeue "$sched"
  return "$status"
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = --selftest ]; then   # the time and layout parsers on fixed inputs
  set -e
  check() { [ "$2" = "$3" ] || { echo "batch_run.sh selftest: $1: '$2' != '$3'"; exit 1; }; }
  check "H:M:S" "$(batch_seconds 1:02:03)" 3723
  check "D-H:M:S" "$(batch_seconds 2-01:00:00)" 176400
  check "D-H" "$(batch_seconds 1-2)" 93600
  check "M:S" "$(batch_seconds 05:09)" 309
  check "S" "$(batch_seconds 42)" 42
  check "UNLIMITED" "$(batch_seconds UNLIMITED)" ""
  tmp=$(mktemp); printf 'a\na\nb\nb\n' > "$tmp"
  PBS_NODEFILE=$tmp batch_layout pbs; check "nodefile" "$batch_nodes x $batch_rpn = $batch_ranks" "2 x 2 = 4"
  printf 'a\na\nb\n' > "$tmp"
  ! PBS_NODEFILE=$tmp batch_layout pbs > /dev/null || { echo "batch_run.sh selftest: unequal nodefile accepted"; exit 1; }
  SLURM_JOB_NUM_NODES=2 SLURM_NTASKS=8 batch_layout slurm; check "slurm" "$batch_nodes x $batch_rpn" "2 x 4"
  rm -f "$tmp"
  echo "batch_run.sh selftest: ok"
fi
