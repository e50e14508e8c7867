#!/usr/bin/env bash
# Local/interactive runner with the same requeue logic as the batch templates:
# reruns temper while it exits with status 3 (checkpoint written after a signal
# or at the walltime margin). Usage: jobscripts/local.sh NP DECK [overrides...]
set -u
np=$1; deck=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
flags=(--oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
while true; do
  mpirun "${flags[@]}" -np "$np" "$here/build/temper" "$deck" --checkpoint.resume=auto "$@"
  status=$?
  [ "$status" -eq 3 ] || exit "$status"
  echo "local.sh: checkpoint written (status 3); resuming"
done
