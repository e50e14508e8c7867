#!/usr/bin/env python3
"""PyTorch reference for validation/bench/bench_attention.cpp: the same shapes
(Qwen2-1.5B: H=12, KVH=2, D=128; Qwen2-0.5B: H=14, KVH=2, D=64; one causal
document of 4K, 16K, 32K tokens) through torch.nn.functional.
scaled_dot_product_attention (bf16, is_causal=True, GQA via enable_gqa or
repeated K/V), timed with CUDA events. Prints the same table and the same
"RESULT" lines (tagged sdpa: PyTorch's own backend choice) that
run_attention.sh pairs with temper's; rows tagged sdpa_flash / sdpa_cudnn force
one fused backend each (printed for reference, where the backend takes the shape).
FLOPs: forward 2*2*S^2/2*H*D (causal), backward 2.5x forward.
Usage: python3 attention_sdpa.py [seq ...]   (SDPA_DEFAULT_ONLY=1: the sdpa rows alone)
"""
import os
import sys

import torch
import torch.nn.functional as F

SHAPES = [("qwen2-1.5b", 12, 2, 128), ("qwen2-0.5b", 14, 2, 64)]


def sdpa(q, k, v):
    try:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    except TypeError:  # older torch: no enable_gqa
        rep = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                              is_causal=True)


def backends():
    """(tag, context factory): PyTorch's own choice ('sdpa', the reference of
    run_attention.sh), then each fused backend forced, where this torch has them."""
    import contextlib
    out = [("sdpa", contextlib.nullcontext)]
    if os.environ.get("SDPA_DEFAULT_ONLY") == "1":  # only PyTorch's own choice (shorter runs)
        return out
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        for tag, be in (("sdpa_flash", "FLASH_ATTENTION"), ("sdpa_cudnn", "CUDNN_ATTENTION")):
            if hasattr(SDPBackend, be):
                out.append((tag, lambda be=be: sdpa_kernel(getattr(SDPBackend, be))))
    except ImportError:
        pass
    return out


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main():
    seqs = [int(a) for a in sys.argv[1:]] or [4096, 16384, 32768]
    if not torch.cuda.is_available():
        print("attention_sdpa skipped: no CUDA device")
        return 77
    torch.manual_seed(0)
    dev = torch.device("cuda")
    print(f"PyTorch {torch.__version__} SDPA (bf16, causal, one document) on {torch.cuda.get_device_name()}")
    print(f"{'model':<11} {'seq':>6} {'H':>4} {'KVH':>4} {'D':>4} | {'fwd ms':>9} {'TFLOP/s':>8} | "
          f"{'bwd ms':>9} {'TFLOP/s':>8} | {'f+b ms':>9} {'TFLOP/s':>8}")
    for name, H, KVH, D in SHAPES:
        for S in seqs:
            q = torch.randn(1, H, S, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
            k = torch.randn(1, KVH, S, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
            v = torch.randn(1, KVH, S, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
            dout = torch.randn(1, H, S, D, device=dev, dtype=torch.bfloat16)
            reps = 20 if S <= 4096 else 6 if S <= 16384 else 3
            for tag, ctx in backends():
                try:
                    with ctx():
                        with torch.no_grad():
                            fwd = time_ms(lambda: sdpa(q, k, v), reps)

                        def fwd_bwd():
                            out = sdpa(q, k, v)
                            torch.autograd.grad(out, (q, k, v), dout)

                        fb = time_ms(fwd_bwd, reps)
                except RuntimeError as e:  # backend refuses the shape (e.g. GQA)
                    print(f"{name:<11} {S:>6} {tag}: not run ({str(e).splitlines()[0][:80]})", flush=True)
                    continue
                bwd = max(fb - fwd, 1e-6)
                flops_f = 2.0 * S * S * H * D
                flops_b = 2.5 * flops_f
                tf_f, tf_b, tf_fb = flops_f / (fwd * 1e9), flops_b / (bwd * 1e9), (flops_f + flops_b) / (fb * 1e9)
                print(f"{name:<11} {S:>6} {H:>4} {KVH:>4} {D:>4} | {fwd:>9.3f} {tf_f:>8.1f} | {bwd:>9.3f} "
                      f"{tf_b:>8.1f} | {fb:>9.3f} {tf_fb:>8.1f}  {tag}", flush=True)
                print(f"RESULT {tag} {name} {S} {tf_f:.3f} {tf_b:.3f} {tf_fb:.3f}", flush=True)
            del q, k, v, dout
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
