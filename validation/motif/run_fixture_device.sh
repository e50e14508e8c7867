#!/usr/bin/env bash
# The device half of the Motif fixture (python3 with PyTorch; no GPU needed, runs on the CPU in f64):
#   FIX    the checkpoint written by `motif_fixture.py write` (tests/fixtures/motif/tiny without reference.json)
#   EXPORT temper's export of it (TEMPER_MOTIF_EXPORT_DIR=EXPORT build/tests/test_hf_motif, f32)
# Writes $OUT/reference.json (commit it as tests/fixtures/motif/tiny/reference.json) and $OUT/check.log:
# the PyTorch implementation's logits of temper's export against its own logits of the fixture.
#   OUT=DIR validation/motif/run_fixture_device.sh FIX EXPORT
set -eu
H=$(cd "$(dirname "$0")" && pwd)
FIX=${1:?usage: run_fixture_device.sh FIX EXPORT}
EXPORT=${2:?usage: run_fixture_device.sh FIX EXPORT}
O=${OUT:?set OUT}
W=$(mktemp -d)
cp -r "$FIX" "$W/fix"
python3 -c 'import torch; print("torch", torch.__version__)'
python3 "$H/motif_fixture.py" reference "$W/fix" | tee "$O/check.log"
cp "$W/fix/reference.json" "$O/reference.json"
python3 "$H/motif_fixture.py" check "$EXPORT" "$W/fix/reference.json" | tee -a "$O/check.log"
