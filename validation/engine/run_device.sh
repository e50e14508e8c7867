#!/usr/bin/env bash
# Issue 16 on one GPU (builds nothing; BIN_DIR holds a CUDA build's `temper`).
#  mesh   A small model (the quickstart's) trained with SFT and then RL on 4 ranks sharing the
#         GPU as sp 2 x dp_shard 2 (parallel.device_comm = mpi: device buffers staged through
#         host memory), against the same runs on 1 rank: per-step loss differences.
#  big    RL of the quickstart deck at the Qwen2-1.5B shape (random weights, Qwen3 tokenizer; zero-variance
#         groups kept, so the update trains on every sample although a random model earns little reward) on
#         one GPU: 1 rank, then 2 ranks sharing the GPU (parallel.device_comm = mpi) as sp 2 and as dp_shard 2
#         (BIG_MESHES): per-step loss, its difference from 1 rank, generation and update tokens/s, step time.
# Prints a markdown table; logs and metrics go to $OUT (or a temporary folder).
#
#   validation/engine/run_device.sh BIN_DIR
# Environment: PARTS ["mesh big"]  BACKEND [cuda]  SFT_STEPS [300]  RL_STEPS [4]  BIG_STEPS [3]
#   BIG_MESHES ["1 sp2 shard2"] (1 = one rank; spN / shardN = N ranks on the GPU as sp N / dp_shard N)
#   TOKENIZER [hf:.cache/hf-tokenizers/qwen3]  BIG_ARGS / MESH_ARGS (extra --section.key=value overrides)
#   RUN_TIMEOUT [900] seconds per temper run (a run past it is killed and reported with exit 124)
set -u
B=$(cd "${1:?usage: run_device.sh BIN_DIR}" && pwd)
H=$(cd "$(dirname "$0")/../.." && pwd)
O=${OUT:-$(mktemp -d)}
mkdir -p "$O"
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
PARTS=${PARTS:-mesh big}
BACKEND=${BACKEND:-cuda}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="timeout ${RUN_TIMEOUT:-900} mpirun --allow-run-as-root --oversubscribe --bind-to none"
cd "$H"
T=$B/temper
T1="timeout ${RUN_TIMEOUT:-900} $T"
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)  git: $(git -C "$H" rev-parse --short HEAD 2>/dev/null)"

# Per-step values of one metric in a metrics JSONL file, comma-separated.
col() { python3 -c "
import json,sys
v=[json.loads(l).get('$2') for l in open('$1') if l.strip()]
v=[x for x in v if x is not None]
print(','.join(repr(x) for x in v))" 2>/dev/null; }
# Largest relative difference of the per-step `loss` of two runs.
lossdiff() { python3 -c "
import json
def f(p):
  try: return [json.loads(l)['loss'] for l in open(p) if l.strip() and 'loss' in json.loads(l)]
  except OSError: return []
a,b=f('$1'),f('$2')
if len(a)!=len(b) or not a: print('steps differ: %d vs %d'%(len(a),len(b)))
else: print('%.2e over %d steps'%(max(abs(x-y)/max(abs(x),1e-6) for x,y in zip(a,b)),len(a)))" 2>&1; }

if [[ " $PARTS " == *" mesh "* ]]; then
  stamp "mesh: small model, 1 rank vs 4 ranks (sp 2 x dp_shard 2, device_comm mpi) on one GPU"
  "$T" generate-tasks --out "$W/data" --seed 1 --train 4000 --eval 64 > "$O/generate.log" 2>&1 || cat "$O/generate.log"
  SMALL="--run.backend=$BACKEND --data.train_files=$W/data/sft_train.jsonl --data.eval_file= --checkpoint.every=0 --log.every=1 ${MESH_ARGS:-}"
  MESH="--parallel.sp=2 --parallel.dp_shard=2 --parallel.dp_replicate=1 --parallel.device_comm=mpi"
  # two data-parallel ranks (dp_shard 2; sp splits tokens, not samples): one rank accumulates 2 micro-batches
  $T1 input/quickstart.deck $SMALL --run.output_dir="$W/sft1" --sft.steps="${SFT_STEPS:-300}" --sft.grad_accum=2 > "$O/sft1.log" 2>&1
  echo "sft 1 rank: exit $?"
  $MPI -np 4 "$T" input/quickstart.deck $SMALL $MESH --run.output_dir="$W/sft4" --sft.steps="${SFT_STEPS:-300}" > "$O/sft4.log" 2>&1
  echo "sft 4 ranks: exit $?"
  SFT_DIFF=$(lossdiff "$W/sft1/metrics.rank0.jsonl" "$W/sft4/metrics.rank0.jsonl")
  RL="input/quickstart_rl.deck --run.backend=$BACKEND --model.init=$W/sft1/checkpoints --rl.prompts_file=$W/data/rl_prompts.jsonl
      --rl.eval_file= --rl.steps=${RL_STEPS:-4} --rl.prompts_per_step=8 --rl.filter_prompts=32 --rl.filter_low=0 --rl.filter_high=1 --rl.dump_every=0 --checkpoint.every=0 ${MESH_ARGS:-}"
  # shellcheck disable=SC2086
  $T1 $RL --run.output_dir="$W/rl1" > "$O/rl1.log" 2>&1
  echo "rl 1 rank: exit $?"
  # shellcheck disable=SC2086
  $MPI -np 4 "$T" $RL $MESH --run.output_dir="$W/rl4" > "$O/rl4.log" 2>&1
  echo "rl 4 ranks: exit $?"
  RL_DIFF=$(lossdiff "$W/rl1/metrics.rank0.jsonl" "$W/rl4/metrics.rank0.jsonl")
  for r in sft1 sft4 rl1 rl4; do cp "$W/$r/metrics.rank0.jsonl" "$O/$r.metrics.jsonl" 2>/dev/null; done
  echo
  echo "| run (small model, $BACKEND) | 4 ranks sp 2 x dp_shard 2 vs 1 rank: max relative per-step loss difference |"
  echo "| --- | --- |"
  echo "| SFT, ${SFT_STEPS:-300} steps | $SFT_DIFF |"
  echo "| RL, ${RL_STEPS:-4} steps | $RL_DIFF |"
  echo "rewards per step, 1 rank: $(col "$W/rl1/metrics.rank0.jsonl" reward)"
  echo "rewards per step, 4 ranks: $(col "$W/rl4/metrics.rank0.jsonl" reward)"
fi

if [[ " $PARTS " == *" big "* ]]; then
  stamp "big: RL steps of the Qwen2-1.5B shape, 1 rank and dp_shard 2 (2 ranks on one GPU)"
  # Instruction-following prompts: a random model's answers are judged (pass or fail), never
  # "unparsable" (which the update drops); a random model rarely ends its turn and a response cut at
  # max_new_tokens is unparsable, so the stop string "the" ends most responses before the limit.
  # The required letter count (at least n, n from 2 to 64) varies over the prompts so that some
  # groups hold passes and fails (responses of random length): nonzero advantages, a nonzero loss
  # to compare between the meshes.
  python3 -c "
for i in range(256):
    print('{\"messages\":[{\"role\":\"user\",\"content\":\"Write about topic %d\"}],\"task\":\"if\",\"constraints\":{\"type\":\"letter_frequency\",\"letter\":\"%s\",\"n\":%d}}' % (i, 'aeiou'[i % 5], [2, 4, 8, 16, 32, 64][(i // 5) % 6]))" > "$W/if.jsonl"
  BIG="input/quickstart_rl.deck --run.backend=$BACKEND --model.init=random --model.vocab_size=0 --model.d_model=1536
       --model.n_layers=28 --model.n_heads=12 --model.n_kv_heads=2 --model.head_dim=128 --model.ffn_dim=8960
       --model.rope_theta=1000000 --model.qkv_bias=true --model.tie_embeddings=true
       --data.tokenizer=${TOKENIZER:-hf:.cache/hf-tokenizers/qwen3} --data.chat_template=chatml
       --rl.prompts_file=$W/if.jsonl --rl.task_mix=if:1 --rl.stop_strings=the --rl.eval_file= --rl.filter=false --rl.steps=${BIG_STEPS:-3}
       --rl.prompts_per_step=32 --rl.group_size=8 --rl.drop_zero_variance=false --rl.max_new_tokens=256 --rl.max_batch=256 --rl.lr=1e-6
       --rl.dump_every=0 --checkpoint.every=0 ${BIG_ARGS:-}"
  for m in ${BIG_MESHES:-1 sp2 shard2}; do
    case "$m" in
      1) $T1 $BIG --run.output_dir="$W/big_$m" > "$O/big_$m.log" 2>&1 ;;  # shellcheck disable=SC2086
      sp*) n=${m#sp}; $MPI -np "$n" "$T" $BIG --parallel.sp="$n" --parallel.device_comm=mpi --run.output_dir="$W/big_$m" > "$O/big_$m.log" 2>&1 ;;
      shard*) n=${m#shard}; $MPI -np "$n" "$T" $BIG --parallel.dp_shard="$n" --parallel.device_comm=mpi --run.output_dir="$W/big_$m" > "$O/big_$m.log" 2>&1 ;;
      *) echo "BIG_MESHES: unknown entry '$m' (1, spN or shardN)"; continue ;;
    esac
    echo "1.5B as $m: exit $?"
  done
  echo
  echo "| 1.5B RL on one GPU | loss per step | max rel. loss diff vs 1 rank | gen tok/s (rank 0) | gen s | trained tokens (all ranks) | update s | step s |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for m in ${BIG_MESHES:-1 sp2 shard2}; do
    f=$W/big_$m/metrics.rank0.jsonl
    cp "$f" "$O/big_$m.metrics.jsonl" 2>/dev/null
    d=$([ "$m" = 1 ] && echo "-" || lossdiff "$W/big_1/metrics.rank0.jsonl" "$f")
    echo "| $([ "$m" = 1 ] && echo '1 rank' || echo "$m (${m//[a-z]/} ranks, device_comm mpi)") | $(col "$f" loss) | $d | $(col "$f" gen_tok_per_s) | $(col "$f" gen_seconds) | $(col "$f" trained_tokens) | $(col "$f" update_seconds) | $(col "$f" step_seconds) |"
  done
  for m in ${BIG_MESHES:-1 sp2 shard2}; do grep -h -iE "error|peak|init" "$O/big_$m.log" | tail -4; done
fi
stamp done
