# Sourced (not run) by the rollout device scripts (run_device.sh, run_gemm_decode_device.sh) after they
# set B, the folder of carried binaries: NCCL_NVLS_ENABLE=0, `stamp NAME` (elapsed seconds), the date /
# GPU line, and cuDNN 9 for temper's binaries. They link it by soname: where the machine's run path has
# none, the one PyTorch ships (the same library HF generate loads) is taken through LD_LIBRARY_PATH.
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
stamp() { echo "---- $1 ($(( $(date +%s) - t0 )) s)"; }
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  gpu: $(nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
if ldd "$B/bench_rollout" | grep -q 'libcudnn.so.9 => not found'; then
  lib=$(ls "$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__ or nvidia.cudnn.__path__[0] + "/x"))' 2>/dev/null)"/lib/libcudnn.so.9 \
        /usr/local/cuda*/lib*/libcudnn.so.9 /usr/lib/x86_64-linux-gnu/libcudnn.so.9 2>/dev/null | head -1)
  [ -n "$lib" ] && export LD_LIBRARY_PATH=$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "cuDNN for temper: ${lib:-none found}"
fi
