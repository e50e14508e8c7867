#!/usr/bin/env bash
# README command 2 (and CI): install, build, run the whole test suite with ctest
# (unit tests, MPI tests under mpirun -np 2 and -np 4; GPU tests skip without a GPU).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/jobscripts/install.sh" "$here/build"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ctest --test-dir "$here/build" --output-on-failure -j "${JOBS:-2}" --timeout 900 "$@"
