#!/usr/bin/env bash
# Issue 17: runs every test named in validation/sandbox/findings.md, REPEAT times each
# (default 3), two at a time, as CI does (ctest -j 2), so each runs beside a busy neighbour.
# Usage: validation/sandbox/run.sh [build-dir] [repeat]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build}
repeat=${2:-3}
export TEMPER_BENCHMARKS_DIR=${TEMPER_BENCHMARKS_DIR:-/work/shared/benchmarks}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
tests='SandboxIsolation\.|RunSandbox\.|RewardsCode\.|CodeHarness\.|RlItems\.|RunFailures\.|test_mpi_deadline|'
tests+='Deck\.(NulByte|CrOnly|SftNeeds)|RunToy\.SignalCheckpoints|RunSignals\.'
uptime
ctest --test-dir "$build" -R "$tests" --repeat "until-fail:$repeat" -j 2 --output-on-failure --timeout 900
uptime
