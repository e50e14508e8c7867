#!/usr/bin/env bash
# Issue 23 items 5 and 6 on one GPU in one device call (builds nothing; BIN_DIR holds `temper`).
#  eval   Eval-phase speed: phase = eval on GSM8K test (1,319 prompts x 4 samples, up to 512 new
#         tokens) with the Qwen2-1.5B shape and RANDOM weights (validation/repro/eval_gsm8k_qwen2_1.5b.deck
#         says why that is fine for timing); time and tokens/s.
#  repro  The paper's RL mechanisms on the synthetic quickstart tasks: one SFT run, then every cell x
#         seed of the matrix below as an RL run from that checkpoint (several at once on the GPU), each
#         scored greedily on 256 held-out prompts before and after.
# Per-run metrics and logs are collected in one archive, $OUT/results.tar.gz (device.txt, eval/,
# repro/<cell>/seed<k>/: the device call brings back few files and only two folders deep), rewritten
# after each part; postproc/repro_report.py $OUT/results.tar.gz --out validation/repro turns it into
# the table and plots.
#
#   validation/repro/run_device.sh BIN_DIR
# Environment (defaults in brackets):
#   PARTS ["eval repro"]  BACKEND [cuda]  SEEDS [5]  RL_STEPS [60]  SFT_STEPS [3000]  JOBS [6] (RL runs at once)
#   CELLS [all of the matrix]  BUDGET_S [330] (no RL run starts after this many seconds of the repro part)
#   ONLY ["" = every cell x seed; else the runs "cell:seed ..." to make, e.g. those a cut-off call skipped]
#   GSM8K [a converted GSM8K JSONL; else converted from $TEMPER_BENCHMARKS_DIR/gsm8k_test.jsonl]
#   TOKENIZER [hf:.cache/hf-tokenizers/qwen3]  EVAL_PROMPTS [0 = all]  EVAL_MAX_BATCH [512]  EVAL_TIMEOUT [420]
#   EVAL_ARGS / SFT_ARGS / RL_ARGS: extra --section.key=value overrides (e.g. tiny CPU checks)
set -u
B=$(cd "${1:?usage: run_device.sh BIN_DIR}" && pwd)
H=$(cd "$(dirname "$0")/../.." && pwd)
OUTDIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
W=${WORK:-$(mktemp -d)}
O=$W/results  # staging; packed into $OUTDIR/results.tar.gz
mkdir -p "$O"
pack() { tar czf "$OUTDIR/results.tar.gz" -C "$O" . && cp "$O/device.txt" "$OUTDIR/"; }
PARTS=${PARTS:-eval repro}
BACKEND=${BACKEND:-cuda}
SEEDS=${SEEDS:-5}
RL_STEPS=${RL_STEPS:-60}
SFT_STEPS=${SFT_STEPS:-3000}
JOBS=${JOBS:-6}
BUDGET_S=${BUDGET_S:-330}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
cd "$H"
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }

# The matrix: name, then the overrides of input/quickstart_rl.deck (GRPO, clip [0.8, 1.28],
# difficulty filter on, S = 2 updates per rollout batch). One factor changes per cell.
MATRIX="grpo|
grpo_clip_wide|--rl.eps_low=0.28 --rl.eps_high=0.40
gspo|--rl.algorithm=gspo
gspo_clip_wide|--rl.algorithm=gspo --rl.eps_low=0.28 --rl.eps_high=0.40
grpo_no_filter|--rl.filter=false
grpo_reuse1|--rl.reuse_steps=1
grpo_reuse4|--rl.reuse_steps=4"
CELLS=${CELLS:-$(echo "$MATRIX" | cut -d'|' -f1 | tr '\n' ' ')}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  echo "backend: $BACKEND  seeds: $SEEDS  rl_steps: $RL_STEPS  sft_steps: $SFT_STEPS  jobs: $JOBS"
  echo "cells: $CELLS"
  echo "temper: $("$B/temper" --version 2>&1 | head -1)  git: $(git -C "$H" rev-parse --short HEAD 2>/dev/null)"
} > "$O/device.txt"
cat "$O/device.txt"

if [[ " $PARTS " == *" eval "* ]]; then
  stamp "eval: GSM8K test x 4 samples, Qwen2-1.5B shape, random weights"
  mkdir -p "$O/eval"
  G=${GSM8K:-}
  if [ -z "$G" ]; then
    G=$W/gsm8k.jsonl
    python3 "$H/postproc/import_benchmark.py" "${TEMPER_BENCHMARKS_DIR:-$H/../shared/benchmarks}/gsm8k_test.jsonl" \
      --out "$G" || { echo "eval: no GSM8K file (set GSM8K or TEMPER_BENCHMARKS_DIR)"; G=; }
  fi
  if [ -n "$G" ]; then
    e0=$(date +%s%N)
    timeout "${EVAL_TIMEOUT:-420}" "$B/temper" "$H/validation/repro/eval_gsm8k_qwen2_1.5b.deck" --run.backend="$BACKEND" \
      --run.output_dir="$W/eval" --eval.file="$G" --data.tokenizer="${TOKENIZER:-hf:.cache/hf-tokenizers/qwen3}" \
      --eval.prompts="${EVAL_PROMPTS:-0}" --eval.max_batch="${EVAL_MAX_BATCH:-512}" ${EVAL_ARGS:-} \
      > "$O/eval/eval.log" 2>&1
    echo "exit $? wall_ms $(( ($(date +%s%N) - e0) / 1000000 ))" | tee "$O/eval/exit.txt"
    cp "$W/eval/eval_summary.json" "$W/eval/deck.resolved.ini" "$O/eval/" 2>/dev/null
    head -n 8 "$W/eval/eval_results.rank0.jsonl" > "$O/eval/eval_results.head.jsonl" 2>/dev/null
    grep -E "eval:|eval done|^\|" "$O/eval/eval.log" | tail -12
  fi
  pack
fi

if [[ " $PARTS " == *" repro "* ]]; then
  stamp "repro: synthetic tasks and SFT ($SFT_STEPS steps)"
  r0=$(date +%s)
  mkdir -p "$O/repro"
  "$B/temper" generate-tasks --out "$W/data" --seed 1 --eval 256 > "$O/repro/generate.log" 2>&1 || cat "$O/repro/generate.log"
  "$B/temper" input/quickstart.deck --run.backend="$BACKEND" --run.output_dir="$W/sft" \
    --data.train_files="$W/data/sft_train.jsonl" --data.eval_file="$W/data/rl_eval.jsonl" \
    --sft.steps="$SFT_STEPS" --checkpoint.every=0 --log.every=100 ${SFT_ARGS:-} > "$O/repro/sft.log" 2>&1
  echo "sft exit $?"; grep -iE "eval|exact" "$O/repro/sft.log" | tail -3
  cp "$W/sft/metrics.rank0.jsonl" "$O/repro/sft_metrics.jsonl" 2>/dev/null

  stamp "repro: $SEEDS seeds x cells {$CELLS}, $RL_STEPS RL steps each, $JOBS at once"
  run_one() {  # cell seed args...
    local cell=$1 seed=$2; shift 2
    local d=$W/rl/$cell/seed$seed o=$O/repro/$cell/seed$seed
    mkdir -p "$o"
    local s0; s0=$(date +%s%N)
    "$B/temper" input/quickstart_rl.deck --run.backend="$BACKEND" --run.seed="$seed" --run.output_dir="$d" \
      --model.init="$W/sft/checkpoints" --rl.prompts_file="$W/data/rl_prompts.jsonl" \
      --rl.eval_file="$W/data/rl_eval.jsonl" --rl.eval_samples=0 --rl.steps="$RL_STEPS" --rl.eval_every=0 \
      --rl.dump_every=0 --checkpoint.every=0 "$@" ${RL_ARGS:-} > "$o/run.log" 2>&1
    local rc=$?
    echo "{\"cell\": \"$cell\", \"seed\": $seed, \"exit\": $rc, \"wall_ms\": $(( ($(date +%s%N) - s0) / 1000000 ))}" > "$o/run.json"
    cp "$d/metrics.rank0.jsonl" "$d/deck.resolved.ini" "$o/" 2>/dev/null
    rm -rf "$d"
    echo "  $cell seed $seed: exit $rc, $(grep -o 'eval final: accuracy [^(]*' "$o/run.log" | tail -1)"
  }
  for seed in $(seq 1 "$SEEDS"); do  # seed-major: a cut-off run still has every cell
    for cell in $CELLS; do
      args=$(echo "$MATRIX" | grep "^$cell|" | cut -d'|' -f2)
      if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $cell:$seed "* ]]; then continue; fi
      if [ "$(( $(date +%s) - r0 ))" -ge "$BUDGET_S" ]; then
        echo "$cell seed $seed" >> "$O/repro/skipped.txt"
        continue
      fi
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
      # shellcheck disable=SC2086
      run_one "$cell" "$seed" $args &
    done
  done
  wait
  [ -f "$O/repro/skipped.txt" ] && echo "skipped (budget $BUDGET_S s): $(wc -l < "$O/repro/skipped.txt") runs"
  pack
  if python3 -c "import numpy, matplotlib" 2>/dev/null; then
    python3 "$H/postproc/repro_report.py" "$O" --out "$W/report" --no-plots | sed -n '/^## Held-out/,$p'
  fi
fi
stamp "done"
