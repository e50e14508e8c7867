#!/usr/bin/env bash
# Issue 21 on one GPU, one device call: checkpoint and start-up figures of the 1.5B shape
# (Qwen2-1.5B: 1.78B parameters with the tied 151936 x 1536 embedding; f32 master weights
# and AdamW moments: a 21.3 GB checkpoint). Builds nothing.
#
#   validation/ckpt/run_device.sh BUILD_DIR        (BUILD_DIR holds temper and bench_checkpoint)
#
# Parts (PARTS, default "bench run"):
#   bench  bench_checkpoint --backend cuda --shape qwen2-1.5b on one rank: engine init time,
#          training stall per asynchronous save (first save: page-locked staging buffers
#          allocated; later saves: reused), the background write, the synchronous write (GB/s
#          to the local disk), the load, and one process's write()+fsync of the same bytes
#          (the disk's reference, same run)
#   run    the temper executable, input/quickstart.deck with the 1.5B shape, 4K packed rows,
#          4 steps, a checkpoint at steps 2 and 4: time from launch to the first step line,
#          the step times around the asynchronous save of step 2, the background write time
# Environment: DISK [$TMPDIR or /tmp]: the local disk written to (needs 25 GB free)
#   TOKENIZER [hf:.cache/hf-tokenizers/qwen3]: tokenizer of the run part (relative to the repo)
#   TIMEOUT_BENCH [360] TIMEOUT_RUN [300] (seconds)
#   BACKEND [cuda], BENCH_SHAPE [qwen2-1.5b], RUN_ARGS [""] (extra overrides): a dry run on a CPU
#   machine is BACKEND=cpu BENCH_SHAPE=tiny RUN_ARGS="--model.d_model=64 --model.n_layers=2
#   --model.n_heads=4 --model.head_dim=16 --model.ffn_dim=128 --data.seq_len=256" TOKENIZER=byte
# Writes $OUT/ckpt_device.md (the table) and $OUT/logs/*.log.
set -u
B=$(cd "${1:?usage: run_device.sh BUILD_DIR}" && pwd)
H=$(cd "$(dirname "$0")/../.." && pwd)
OUTDIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUTDIR/logs"
DISK=${DISK:-${TMPDIR:-/tmp}}
W=$(mktemp -d "$DISK/temper_ckpt_XXXXXX")
PARTS=${PARTS:-bench run}
BACKEND=${BACKEND:-cuda}
BENCH_SHAPE=${BENCH_SHAPE:-qwen2-1.5b}
RUN_ARGS=${RUN_ARGS:-}
TOKENIZER=${TOKENIZER:-hf:.cache/hf-tokenizers/qwen3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} NCCL_NVLS_ENABLE=0
# parallel HDF5 is not used: temper links the serial libhdf5 (the GPU machine has it)
cd "$H"
MD=$OUTDIR/ckpt_device.md
{
  echo "# Checkpoints and start-up on the GPU machine ($(date -u +%Y-%m-%d))"
  echo
  echo "- gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  echo "- host: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; disk $DISK: $(df -h "$DISK" | awk 'NR==2 {print $2 " (" $4 " free), " $1}')"
  echo "- temper: git $(git -C "$H" rev-parse --short HEAD 2>/dev/null), $(ldd "$B/temper" | grep -o 'libhdf5[^ ]*' | head -1)"
  echo "- command: validation/ckpt/run_device.sh $B  (PARTS=\"$PARTS\")"
  echo
} > "$MD"

if [[ " $PARTS " == *" bench "* ]]; then
  timeout "${TIMEOUT_BENCH:-360}" "$B/bench_checkpoint" --backend "$BACKEND" --shape "$BENCH_SHAPE" --dir "$W/bench" \
    > "$OUTDIR/logs/bench.log" 2>&1
  rc=$?
  {
    echo "## bench_checkpoint --backend $BACKEND --shape $BENCH_SHAPE (1 rank; exit $rc)"
    echo
    grep -E '^bench_checkpoint|^\|' "$OUTDIR/logs/bench.log"
    echo
    grep -E '^\{' "$OUTDIR/logs/bench.log" | sed 's/^/    /'
    echo
  } >> "$MD"
  rm -rf "$W/bench"
fi

if [[ " $PARTS " == *" run "* ]]; then
  "$B/temper" generate-tasks --out "$W/data" --seed 1 --train 2000 --eval 8 > "$OUTDIR/logs/data.log" 2>&1
  # two 21 GB files exist at once when the final save begins (keep_last 1): without room for
  # both, only the final checkpoint is written (the bench part measured the stall already)
  free_gb=$(df -BG --output=avail "$DISK" | tail -1 | tr -dc 0-9)
  EVERY=2
  [ "${free_gb:-0}" -lt 48 ] && [ "$BACKEND" = cuda ] && EVERY=0
  T0=$(date +%s.%N)
  # every output line with the seconds since launch
  # shellcheck disable=SC2086
  timeout "${TIMEOUT_RUN:-300}" "$B/temper" input/quickstart.deck --run.backend="$BACKEND" --run.output_dir="$W/run" \
    --model.vocab_size=0 --model.d_model=1536 --model.n_layers=28 --model.n_heads=12 --model.n_kv_heads=2 \
    --model.head_dim=128 --model.ffn_dim=8960 --model.rope_theta=1000000 --model.qkv_bias=true \
    --model.tie_embeddings=true --data.tokenizer="$TOKENIZER" --data.chat_template=chatml \
    --data.train_files="$W/data/sft_train.jsonl" --data.eval_file= --data.seq_len=4096 --data.micro_batch=1 \
    --sft.steps=4 --sft.warmup_steps=1 --sft.lr=1e-5 --sft.min_lr=1e-6 --sft.eval_samples=0 --checkpoint.every=$EVERY \
    --checkpoint.keep_last=1 --log.every=1 $RUN_ARGS 2>&1 |
    while IFS= read -r line; do printf '%8.2f %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$line"; done \
    > "$OUTDIR/logs/run.log"
  t_of() { grep -m1 -E "$1" "$OUTDIR/logs/run.log" | awk '{print $1}'; }
  s1=$(t_of ' step 1/'); s2=$(t_of ' step 2/'); s3=$(t_of ' step 3/'); s4=$(t_of ' step 4/')
  diff_of() { [ -n "$1" ] && [ -n "$2" ] && printf '%.2f' "$(echo "$2 - $1" | bc)" || echo n/a; }
  {
    echo "## temper, input/quickstart.deck with the 1.5B shape (4K rows, 4 steps, checkpoint.every $EVERY, $free_gb GB free)"
    echo
    echo "| figure | seconds |"
    echo "|---|---:|"
    echo "| launch to the first step line | ${s1:-n/a} |"
    echo "| step 2 line to step 3 line (step 3 + the stall of the asynchronous save at step 2) | $(diff_of "$s2" "$s3") |"
    echo "| step 3 line to step 4 line (a step, no save) | $(diff_of "$s3" "$s4") |"
    echo
    echo "Timing lines of the run (seconds since launch):"
    echo
    grep -E 'initial weights|checkpoints:|step [0-9]+/|snapshot taken|checkpoint written|rank 0 wrote|error' \
      "$OUTDIR/logs/run.log" | head -30 | sed 's/^/    /'
    echo
  } >> "$MD"
fi
rm -rf "$W"
cat "$MD"
