#!/usr/bin/env bash
# Issue 21 on one GPU: start-up and checkpoint figures of the 1.5B shape (Qwen2-1.5B:
# 1.78B parameters with the tied 151936 x 1536 embedding; f32 master weights and AdamW
# moments: a 21.3 GB checkpoint), measured by the temper executable's own timing lines.
# Builds nothing.
#
#   validation/ckpt/run_device.sh BIN_DIR [TOKENIZER_DIR]
#     BIN_DIR: holds temper (CUDA build); TOKENIZER_DIR: a Hugging Face tokenizer folder
#     (default .cache/hf-tokenizers/qwen3; 'byte' for the byte tokenizer)
#
# Runs (input/quickstart.deck with the 1.5B shape, 4K packed rows, every output line
# stamped with the seconds since its launch):
#   async  4 steps, a checkpoint at steps 2 and 4, checkpoint.async = true: engine set-up
#          (allocation + random initialisation on the GPU), launch to the first step,
#          what training waited per save (step 2: page-locked staging buffers allocated;
#          step 4: reused, after the step-2 write finished), each background write (GB/s)
#   sync   2 steps, a checkpoint at step 2, checkpoint.async = false: the synchronous
#          write (GB/s) and what training waited for it
#   disk   first, dd of 4 GiB to the same folder with fsync: the disk's own speed, same call
# Environment: DISK [$TMPDIR or /tmp] (needs 45 GB free for two async checkpoints; with
#   less, the async run saves only at step 2), BUDGET [140] seconds for everything (each
#   run is given what is left; a run cut short reports what it logged), BACKEND [cuda],
#   RUN_ARGS [""] (extra overrides; a dry run on a CPU machine: BACKEND=cpu
#   RUN_ARGS="--model.vocab_size=0 --model.d_model=64 --model.n_layers=2 --model.n_heads=4
#   --model.n_kv_heads=2 --model.head_dim=16 --model.ffn_dim=128 --data.seq_len=256" with
#   TOKENIZER_DIR=byte)
# Writes $OUT/ckpt_device.md (the table) and $OUT/logs/*.log.
set -u
B=$(cd "${1:?usage: run_device.sh BIN_DIR [TOKENIZER_DIR]}" && pwd)
H=$(cd "$(dirname "$0")/../.." && pwd)
TOK=${2:-$H/.cache/hf-tokenizers/qwen3}
[ "$TOK" != byte ] && TOK=hf:$(cd "$TOK" && pwd)
OUTDIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUTDIR/logs"
DISK=${DISK:-${TMPDIR:-/tmp}}
W=$(mktemp -d "$DISK/temper_ckpt_XXXXXX")
BACKEND=${BACKEND:-cuda}
RUN_ARGS=${RUN_ARGS:-}
T_START=$(date +%s)
left() { echo $(( ${BUDGET:-140} - ($(date +%s) - T_START) )); }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} NCCL_NVLS_ENABLE=0
cd "$H"
MD=$OUTDIR/ckpt_device.md
{
  echo "# Start-up and checkpoints on the GPU machine ($(date -u +%Y-%m-%d))"
  echo
  echo "- gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  echo "- host: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; disk $DISK: $(df -h "$DISK" | awk 'NR==2 {print $2 " (" $4 " free), " $1}')"
  echo "- temper: git $(git -C "$H" rev-parse --short HEAD 2>/dev/null), $(ldd "$B/temper" | grep -o 'libhdf5[^ ]*' | head -1)"
  echo "- command: validation/ckpt/run_device.sh BIN_DIR $TOK (BACKEND $BACKEND)"
  echo
} > "$MD"

"$B/temper" generate-tasks --out "$W/data" --seed 1 --train 2000 --eval 8 > "$OUTDIR/logs/data.log" 2>&1

# run NAME STEPS EVERY ASYNC: one temper run, its output stamped with seconds since launch
run() {
  local name=$1 steps=$2 every=$3 async=$4 t0 budget now cs
  budget=$(left)
  [ "$budget" -lt 20 ] && { echo "skipped: $budget s left" > "$OUTDIR/logs/$name.log"; return; }
  t0=${EPOCHREALTIME/./}  # microseconds
  # shellcheck disable=SC2086
  timeout "$budget" "$B/temper" input/quickstart.deck --run.backend="$BACKEND" --run.output_dir="$W/$name" \
    --model.vocab_size=151936 --model.d_model=1536 --model.n_layers=28 --model.n_heads=12 --model.n_kv_heads=2 \
    --model.head_dim=128 --model.ffn_dim=8960 --model.rope_theta=1000000 --model.qkv_bias=true \
    --model.tie_embeddings=true --data.tokenizer="$TOK" --data.chat_template=chatml \
    --data.train_files="$W/data/sft_train.jsonl" --data.eval_file= --data.seq_len=4096 --data.micro_batch=1 \
    --sft.steps="$steps" --sft.warmup_steps=1 --sft.lr=1e-5 --sft.min_lr=1e-6 --sft.eval_samples=0 \
    --checkpoint.every="$every" --checkpoint.keep_last=1 --checkpoint.async="$async" --log.every=1 $RUN_ARGS 2>&1 |
    while IFS= read -r line; do  # bash builtins only: stamping must not lag behind the output
      now=${EPOCHREALTIME/./}; cs=$(( (now - t0) / 10000 ))
      printf '%5d.%02d %s\n' $((cs / 100)) $((cs % 100)) "$line"
    done \
    > "$OUTDIR/logs/$name.log"
  rm -rf "${W:?}/$name"
}

# the disk's own speed first: with less than 1.5 GB/s (or less than 45 GB free) the async run
# saves only at step 2, so that the sync run still fits in the budget
dd_line=$(timeout 30 dd if=/dev/zero of="$W/dd.bin" bs=64M count=64 conv=fsync 2>&1 | tail -1)
rm -f "$W/dd.bin"
dd_gbps=$(echo "$dd_line" | awk -F', ' '{ s = $(NF - 1) + 0; if (s > 0) printf "%.2f", 4.294967296 / s; else print 0 }')
free_gb=$(df -BG --output=avail "$DISK" | tail -1 | tr -dc 0-9)
ASTEPS=4
if [ "$BACKEND" = cuda ]; then
  [ "${free_gb:-0}" -lt 45 ] && ASTEPS=2
  awk -v g="$dd_gbps" 'BEGIN { exit !(g < 1.5) }' && ASTEPS=2
fi
run async "$ASTEPS" 2 true
run sync 2 2 false
rm -rf "$W"

# figures from the logs
A=$OUTDIR/logs/async.log S=$OUTDIR/logs/sync.log
first() { grep -m1 -E "$2" "$1" 2>/dev/null | grep -oE "$3" | head -1; }
nth() { grep -E "$2" "$1" 2>/dev/null | sed -n "${3}p" | grep -oE "$4" | head -1; }
stamp() { grep -m1 -E "$2" "$1" 2>/dev/null | awk '{print $1}'; }
num='[0-9]+\.[0-9]+'
{
  echo "## temper, input/quickstart.deck with the 1.5B shape (4K rows; async run: $ASTEPS steps, $free_gb GB free)"
  echo
  echo "| figure | async run | sync run |"
  echo "|---|---:|---:|"
  echo "| engine set-up: allocation + random init on the device (s) | $(first "$A" 'engine set up in' "set up in $num" | grep -oE "$num") | $(first "$S" 'engine set up in' "set up in $num" | grep -oE "$num") |"
  echo "| launch to the first step line (s) | $(stamp "$A" ' step +1/') | $(stamp "$S" ' step +1/') |"
  echo "| step 2 save: training waited (s) | $(nth "$A" 'training waited' 1 "waited $num" | grep -oE "$num") | $(nth "$S" 'training waited' 1 "waited $num" | grep -oE "$num") |"
  echo "| step 4 save: training waited (s), of which for the step-2 write | $(nth "$A" 'training waited' 2 "waited $num" | grep -oE "$num"), $(nth "$A" 'training waited' 2 "which $num" | grep -oE "$num") | |"
  echo "| write of step 2: seconds, GB/s | $(nth "$A" 'checkpoint written' 1 "background: $num" | grep -oE "$num"), $(nth "$A" 'checkpoint written' 1 "$num GB/s") | $(first "$S" 'checkpoint written' "in $num s" | grep -oE "$num"), $(first "$S" 'checkpoint written' "$num GB/s") |"
  echo "| write of step 4: seconds, GB/s | $(nth "$A" 'checkpoint written' 2 "background: $num" | grep -oE "$num"), $(nth "$A" 'checkpoint written' 2 "$num GB/s") | |"
  echo "| checkpoint size (GB) | $(first "$A" 'checkpoint written' "wrote $num GB" | grep -oE "$num") | $(first "$S" 'checkpoint written' "$num GB in" | grep -oE "$num") |"
  echo "| step time without a save (s, step 3 line - step 2 line) | $(awk -v a="$(stamp "$A" ' step +3/')" -v b="$(stamp "$A" ' step +2/')" 'BEGIN { if (a != "" && b != "") printf "%.2f", a - b }') | |"
  echo
  echo "disk reference (dd 4 GiB, conv=fsync, same folder, before the runs): $dd_line ($dd_gbps GB/s)"
  echo
  for f in "$A" "$S"; do
    echo "Timing lines of $(basename "$f" .log) (seconds since launch):"
    echo
    grep -E 'initial weights|checkpoints:|step +[0-9]+/|snapshot taken|training waited|checkpoint written|error|skipped' \
      "$f" 2>/dev/null | cut -c1-220 | head -24 | sed 's/^/    /'
    echo
  done
} >> "$MD"
cat "$MD"
