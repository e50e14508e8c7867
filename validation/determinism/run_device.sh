#!/usr/bin/env bash
# CUDA determinism checks on one GPU, run from the repository root (outputs under $OUT):
#  test_cuda_determinism; two quickstart SFT runs of 300 steps (per-step losses, final weights as an f32
#  export compared byte for byte); the step-150 checkpoint of the first resumed to 300 (same comparisons);
#  test_cuda_kernels / test_cuda_model / test_cuda_attention; bench_train 1.5B 4K before (a build of the
#  previous commit as bench_train_before), after, and after with --deterministic 0. One call, ~190 s.
#   validation/determinism/run_device.sh BIN_DIR
set -u
D=$(cd "${1:?usage: run_device.sh BIN_DIR (temper, bench_train, bench_train_before, test_cuda_*)}" && pwd)
O=${OUT:-/tmp/determ_out}; mkdir -p "$O"
W=$(mktemp -d)
export NCCL_NVLS_ENABLE=0 OMP_NUM_THREADS=4 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$(date +%s); stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" | tee "$O/device.txt"
stamp "determinism gtest"
TEMPER_CUDNN_VERBOSE=1 timeout 40 "$D/test_cuda_determinism" > "$O/test_cuda_determinism.log" 2>&1; echo "test_cuda_determinism exit $?"
grep -E "variant|FAILED|PASSED|differ|refused|cuDNN" "$O/test_cuda_determinism.log" | head -20
stamp "quickstart data"
T=$D/temper
"$T" generate-tasks --out "$W/data" > "$O/generate.log" 2>&1 || tail -3 "$O/generate.log"
Q="input/quickstart.deck --run.backend=cuda --data.train_files=$W/data/sft_train.jsonl --data.eval_file=$W/data/rl_eval.jsonl --log.every=1 --checkpoint.every=150 --checkpoint.keep_last=0 --checkpoint.async=false"
for r in a b; do
  stamp "quickstart run $r"
  timeout 45 "$T" $Q --run.output_dir="$W/$r" > "$O/sft_$r.log" 2>&1; echo "run $r exit $?"
  cp "$W/$r/metrics.rank0.jsonl" "$O/metrics_$r.jsonl" 2>/dev/null
done
python3 - "$W/a/metrics.rank0.jsonl" "$W/b/metrics.rank0.jsonl" <<'PY'
import json,sys
def f(p): return [json.loads(l) for l in open(p) if l.strip()]
a,b=f(sys.argv[1]),f(sys.argv[2])
la=[x['loss'] for x in a if 'loss' in x]; lb=[x['loss'] for x in b if 'loss' in x]
d=[i for i,(x,y) in enumerate(zip(la,lb)) if x!=y]
print('losses: %d vs %d steps, %d differ%s, final %r vs %r'%(len(la),len(lb),len(d),(' (first at index %d)'%d[0]) if d else '',la[-1] if la else None,lb[-1] if lb else None))
PY
grep -i "exact\|held-out" "$O/sft_a.log" "$O/sft_b.log" | tail -4
stamp "resume: copy a's step-150 checkpoint, resume to 300"
mkdir -p "$W/c/checkpoints"; cp "$W/a/checkpoints/"ckpt_*150.h5 "$W/c/checkpoints/"; ls "$W/a/checkpoints" "$W/c/checkpoints"
timeout 45 "$T" $Q --run.output_dir="$W/c" --checkpoint.resume=auto > "$O/sft_c.log" 2>&1; echo "run c exit $?"
cp "$W/c/metrics.rank0.jsonl" "$O/metrics_c.jsonl" 2>/dev/null
python3 - "$W/a/metrics.rank0.jsonl" "$W/c/metrics.rank0.jsonl" <<'PY'
import json,sys
def f(p): return {x['step']:x['loss'] for x in (json.loads(l) for l in open(p) if l.strip()) if 'loss' in x and 'step' in x}
a,c=f(sys.argv[1]),f(sys.argv[2])
common=sorted(set(a)&set(c))
d=[s for s in common if a[s]!=c[s]]
print('resume: %d common steps (%s..%s), %d differ; final a %r c %r'%(len(common),common[0] if common else '-',common[-1] if common else '-',len(d),a.get(max(a)) if a else None,c.get(max(c)) if c else None))
PY
for r in a b c; do "$T" export --checkpoint "$W/$r/checkpoints" --out "$W/exp_$r" --dtype f32 > "$O/export_$r.log" 2>&1 || tail -2 "$O/export_$r.log"; done
for r in b c; do for f in $(cd "$W/exp_a" && ls *.safetensors); do cmp "$W/exp_a/$f" "$W/exp_$r/$f" && echo "final weights (f32 export) $f: a == $r (bytes)"; done; done
ls "$W/a/checkpoints" "$W/c/checkpoints"
left() { echo $(( 190 - ($(date +%s) - t0) )); }
run_t() {  # name limit cmd...: runs when the time left allows
  local name=$1 lim=$2; shift 2
  local l=$(left); if (( l < 8 )); then echo "$name skipped (time)"; return; fi
  (( lim > l - 3 )) && lim=$(( l - 3 ))
  timeout "$lim" "$@" > "$O/$name.log" 2>&1; echo "$name exit $? ($(( $(date +%s) - t0 )) s)"
}
stamp "gpu tests"
run_t test_cuda_kernels 40 "$D/test_cuda_kernels"; grep -E "FAILED|PASSED" "$O/test_cuda_kernels.log" | head -6
run_t test_cuda_model 40 "$D/test_cuda_model"; grep -E "FAILED|PASSED" "$O/test_cuda_model.log" | head -6
stamp "bench_train 1.5B 4K"
run_t bench_before 50 "$D/bench_train_before" --shapes qwen2-1.5b --seqs 4096 --warmup 1 --steps 4
run_t bench_after 35 "$D/bench_train" --shapes qwen2-1.5b --seqs 4096 --warmup 1 --steps 4
run_t test_cuda_attention 45 env TEMPER_CUDNN_VERBOSE=1 "$D/test_cuda_attention"; grep -E "FAILED|PASSED|refused" "$O/test_cuda_attention.log" | head -8
run_t bench_after_nondet 35 "$D/bench_train" --shapes qwen2-1.5b --seqs 4096 --warmup 1 --steps 4 --deterministic 0
grep -h "qwen2-1.5b" "$O"/bench_*.log | grep -v "^{" | head -6
stamp done
rm -rf "$W"
