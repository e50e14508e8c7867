#!/usr/bin/env bash
# The weight-GEMM device call of issue 20 (2026-12-04; results_2026-12-04_h200_gemm_decode.md), from
# the repository root with the stripped binaries in $B (carried): bench_gemm_decode (cublasGemmEx vs
# the rule variants vs every candidate), a rule picked from its table (least GEMM time per decode step
# summed over the batches, rows limit included; TEMPER_GEMM_LT), then the GPU tests and bench_rollout
# under the picked rule.
set -u
B=${B:-.dev/gemm}
O=${OUT:-/tmp}
. "$(dirname "${BASH_SOURCE[0]}")/device_prelude.sh"  # stamp, the GPU line, cuDNN for temper
ldd "$B/bench_gemm_decode" | grep "not found"
timeout 75 "$B/bench_gemm_decode" --enum-budget ${ENUM_S:-25} > "$O/bench_gemm.txt" 2>&1
echo "bench_gemm_decode rc=$?"
stamp bench_gemm
python3 - "$O/bench_gemm.txt" > "$O/pick.txt" 2>&1 <<'PY'
import json, sys, collections
rule, base = collections.defaultdict(float), collections.defaultdict(float)
ms = set()
for l in open(sys.argv[1]):
    if not l.startswith('JSON '): continue
    d = json.loads(l[5:])
    if d['bench'] == 'gemm_decode_rule':
        rule[(d['rule'], d['M'])] += d['us'] * d['calls'] / 1e3
        ms.add(d['M'])
    elif d['bench'] == 'gemm_decode':
        base[d['M']] += d['before_us'] * (1 if d['gemm'].startswith('lm head') else 28) / 1e3
specs = sorted({r for r, _ in rule})
best = None
for s in specs:
    for rows in sorted(ms):
        tot = sum(rule[(s, M)] if M <= rows else base[M] for M in ms)
        print('%-55s rows=%-5d total %.3f ms  (%s)' % (s, rows, tot, ' '.join('%d:%.3f' % (M, rule[(s, M)] if M <= rows else base[M]) for M in sorted(ms))))
        if best is None or tot < best[0] - 1e-6: best = (tot, s + ',rows=%d' % rows)
print('cublasGemmEx total %.3f ms (%s)' % (sum(base.values()), ' '.join('%d:%.3f' % (M, base[M]) for M in sorted(ms))))
if best is None or best[0] >= sum(base.values()): print('PICK off')
else: print('PICK ' + best[1])
PY
tail -3 "$O/pick.txt"
PICK=$(grep '^PICK ' "$O/pick.txt" | tail -1 | cut -d' ' -f2)
export TEMPER_GEMM_LT=${PICK:-off}
echo "TEMPER_GEMM_LT=$TEMPER_GEMM_LT"
for t in test_cuda_gemm_decode test_cuda_kernels test_cuda_generation; do
  timeout 30 "$B/$t" > "$O/t.log" 2>&1; rc=$?; echo "$t rc=$rc" | tee -a "$O/tests.log"
  grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) |Failure|error|expected|: cublas" "$O/t.log" >> "$O/tests.log"
done
stamp tests
timeout 20 "$B/test_cuda_model" --gtest_filter='*LogitsLogpAndGradientsMatchCpu*' > "$O/t.log" 2>&1
echo "test_cuda_model (logits/grads) rc=$?" | tee -a "$O/tests.log"
grep -E "^\[ +(OK|FAILED|PASSED) |Failure" "$O/t.log" >> "$O/tests.log"
stamp tests
left=$(( 176 - $(date +%s) + t0 ))
timeout $left "$B/bench_rollout" --backend cuda --shapes qwen2-1.5b --batches 64,256,1024 --no-eager --ops > "$O/rollout.txt" 2>&1
echo "bench_rollout rc=$? (limit $left s)"
stamp rollout
grep -E "rc=|FAILED|PASSED" "$O/tests.log"
grep -B2 -A8 "^per decode step" "$O/bench_gemm.txt"; grep "^FAILED" "$O/bench_gemm.txt" | head -5
stamp end
