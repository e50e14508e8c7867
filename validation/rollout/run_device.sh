#!/usr/bin/env bash
# Issue 20 device run (one call): the generation GPU tests (graph decode vs eager
# vs CPU engine, the vocabulary mask vs its CPU twin, kv cache and sampling),
# the cached-attention tests of test_cuda_attention, then bench_rollout with HF
# generate measured in the same run, then (RL=1) RL steps of the 1.5B shape on one
# GPU with their generation / update split (validation/engine/run_device.sh, part
# big, 1 rank), decode graphs on when the graph test passed.
# Binaries (bench_rollout, test_cuda_generation, test_cuda_attention, temper) are
# built on the host (build-cuda, sm_90a) and copied into $B (carried), with the
# Qwen3 tokenizer folder as $B/qwen3 for the RL part.
#   bash validation/rollout/run_device.sh   (from the repository root; logs in $OUT or /tmp)
# Environment: B [.dev/rollout2]  BATCHES [64,256,1024]  HF_BATCHES [64,256]  GROUP [1]  GROUP_SHAPE [64,8,1024]
#   RL [1]  RL_STEPS [3]  BENCH_S / GROUP_S / RL_S / TEST_S (time limits, s)
#   BENCH_FLAGS [] (e.g. --no-eager)  ALL_TESTS [0]: 1 runs every test_cuda_* binary in $B whole (all at once on the one GPU) instead of the generation / cached-attention ones
set -u
B=${B:-.dev/rollout2}
O=${OUT:-/tmp}
. "$(dirname "${BASH_SOURCE[0]}")/device_prelude.sh"  # stamp, the GPU line, cuDNN for temper
ldd "$B/bench_rollout" | grep "not found"
if [ "${ALL_TESTS:-0}" = 1 ]; then  # every GPU test binary in $B, whole (the suite's gpu label), side by side
  for t in "$B"/test_cuda_*; do
    n=$(basename "$t")
    ( timeout "${TEST_S:-240}" "$t" > "$O/$n.part" 2>&1; echo "$n rc=$?" >> "$O/$n.part" ) &
  done
  wait
  cat "$O"/test_cuda_*.part > "$O/tests.log"; rm -f "$O"/test_cuda_*.part
else
  timeout 180 "$B/test_cuda_generation" > "$O/tests.log" 2>&1; echo "test_cuda_generation rc=$?" >> "$O/tests.log"
  timeout 120 "$B/test_cuda_attention" --gtest_filter='*Cached*' >> "$O/tests.log" 2>&1
  echo "test_cuda_attention rc=$?" >> "$O/tests.log"
fi
grep -E "^\[ +(PASSED|FAILED) |rc=|Failure" "$O/tests.log" | head -60
GRAPHS=0
grep -q "^\[       OK \] CudaGenerationTest.GraphDecodeMatchesEagerAndCpu" "$O/tests.log" && GRAPHS=1
stamp "tests (graph decode passed: $GRAPHS)"
timeout "${BENCH_S:-300}" "$B/bench_rollout" --backend cuda --shapes qwen2-1.5b --batches "${BATCHES:-64,256,1024}" --ops ${BENCH_FLAGS:-} \
  --torch validation/bench/torch_generate.py --torch-batches "${HF_BATCHES:-64,256}" > "$O/bench.log" 2>&1
echo "bench_rollout rc=$?"
grep -v "^  hf>" "$O/bench.log" | grep -v "^JSON" | tail -75
stamp bench
if [ "${GROUP:-1}" = 1 ]; then  # group sampling's prefill: 64 prompts x 8 samples, 1K-token prompts (~2 min)
  timeout "${GROUP_S:-180}" "$B/bench_rollout" --backend cuda --shapes qwen2-1.5b --batches '' --no-eager --no-split \
    --group "${GROUP_SHAPE:-64,8,1024}" > "$O/group.log" 2>&1
  echo "group rc=$?"; grep -E "^\||shared|group" "$O/group.log" | head -8
  stamp group
fi
if [ "${RL:-1}" = 1 ] && [ -x "$B/temper" ]; then
  # the final checkpoint (~23 GB with AdamW state) is written after the last step: the limit may stop
  # it there, so the metrics file is copied from the work folder afterwards
  W=${WORK:-/tmp/rollout_rl}
  mkdir -p "$O/rl" "$W"
  TEMPER_DECODE_GRAPHS=$GRAPHS WORK="$W" OUT="$O/rl" PARTS=big BIG_MESHES=1 BIG_STEPS="${RL_STEPS:-3}" \
    TOKENIZER="hf:$B/qwen3" timeout "${RL_S:-200}" bash validation/engine/run_device.sh "$B" > "$O/rl/run.txt" 2>&1
  cp "$W/big_1/metrics.rank0.jsonl" "$O/rl/metrics.jsonl" 2>/dev/null
  python3 -c "
import json
for l in open('$O/rl/metrics.jsonl'):
    d = json.loads(l)
    if 'gen_seconds' in d:
        print({k: d.get(k) for k in ['gen_tokens', 'gen_tok_per_s', 'gen_seconds', 'update_seconds', 'step_seconds', 'loss']})"
  stamp "rl (decode graphs $GRAPHS)"
fi
