#!/usr/bin/env python3
"""PyTorch + transformers reference for validation/bench/bench_train.cpp.

Same shapes (Qwen2Config, random init, tied embeddings, q/k/v biases), one
packed sequence of `seq` random tokens per step (one document), the usual
bf16 baseline: bf16 parameters and gradients, attn_implementation="sdpa"
(flash kernel for the causal mask), transformers' own shifted cross-entropy,
global grad-norm clip at 1.0, fused AdamW. --checkpointing turns on
gradient_checkpointing_enable() (non-reentrant); --ckpt-seqs adds checkpointed
rows at those lengths in the same process (after the plain rows). One extra untimed step
(as bench_train does) gives the loss at init. Out-of-memory rows print
"OOM" and the run goes on.

Prints one JSON line per row (same keys as bench_train) and a markdown table
with the same columns. MFU uses temper's ModelConfig::flops_per_token:
6 * (L * (q,k,v,o,gate_up,down weights) + V*C head) + 6 * L * H * D * (seq + 1)
FLOPs per token against --peak-tflops (H100 SXM dense bf16: 989).

  python3 torch_train.py [--shapes qwen2-0.5b,qwen2-1.5b] [--seqs 4096,16384]
                         [--warmup 2] [--steps 5] [--checkpointing] [--ckpt-seqs 16384,32768]
                         [--peak-tflops 989]
"""
import argparse
import gc
import json
import sys
import time

SHAPES = {
    "qwen2-0.5b": dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, intermediate_size=4864),
    "qwen2-1.5b": dict(vocab_size=151936, hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, intermediate_size=8960),
    "tiny": dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=256),
}


def flops_per_token(s, seq):
    C, L, H, KVH, F, V = (s["hidden_size"], s["num_hidden_layers"], s["num_attention_heads"],
                          s["num_key_value_heads"], s["intermediate_size"], s["vocab_size"])
    D = C // H
    q, kv = H * D, KVH * D
    per_layer = q * C + 2 * kv * C + C * q + 3 * F * C
    p_mm = L * per_layer + V * C
    return 6.0 * p_mm + 6.0 * L * q * (seq + 1)


def run_one(torch, transformers, name, seq, args, ckpt):
    s = SHAPES[name]
    row = dict(impl="pytorch+ckpt" if ckpt else "pytorch", backend="cuda", shape=name, seq=seq,
               status="ok", tokens_per_s=0.0, step_ms=0.0, step_ms_min=0.0, mfu=0.0, peak_gib=-1.0,
               allocated_gib=-1.0, loss=float("nan"), warmup=args.warmup, steps=args.steps)
    model = opt = None
    try:
        cfg = transformers.Qwen2Config(**s, max_position_embeddings=max(seq, 32768), rope_theta=1e6,
                                       rms_norm_eps=1e-6, tie_word_embeddings=True, use_cache=False)
        torch.manual_seed(args.seed)
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device("cuda"):  # initialise on the GPU, in bf16
                model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
        finally:
            torch.set_default_dtype(prev)
        model = model.to(device="cuda", dtype=torch.bfloat16)
        model.train()
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        row["params"] = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                                fused=True)
        g = torch.Generator(device="cuda").manual_seed(args.seed + seq)
        ids = torch.randint(0, s["vocab_size"], (1, seq), device="cuda", generator=g)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

        def step():
            out = model(input_ids=ids, labels=ids, use_cache=False)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return out.loss

        first = step()  # an extra warmup step; its loss is the loss at init (about ln V)
        for _ in range(args.warmup):
            step()
        torch.cuda.synchronize()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        row["step_ms"] = sum(times) / len(times)
        row["step_ms_min"] = min(times)
        row["tokens_per_s"] = seq / (row["step_ms"] / 1e3)
        row["mfu"] = flops_per_token(s, seq) * row["tokens_per_s"] / (args.peak_tflops * 1e12)
        row["loss"] = float(first.item())
        row["peak_gib"] = torch.cuda.max_memory_reserved() / 2**30
        row["allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    except torch.OutOfMemoryError as e:
        row["status"] = "OOM"
        print(f"torch_train: {name} seq {seq}: out of memory ({str(e).splitlines()[0]})", file=sys.stderr)
    finally:
        del model, opt
        gc.collect()
        torch.cuda.empty_cache()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="qwen2-0.5b,qwen2-1.5b")
    ap.add_argument("--seqs", default="4096,16384")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--ckpt-seqs", default="", help="also these lengths with gradient checkpointing")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import torch
    import transformers

    if not torch.cuda.is_available():
        print("torch_train: no CUDA device; nothing to measure", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for name in args.shapes.split(","):
        if name not in SHAPES:
            print(f"torch_train: unknown shape {name!r} ({', '.join(SHAPES)})", file=sys.stderr)
            return 2
        runs = [(int(x), args.checkpointing) for x in args.seqs.split(",") if x]
        runs += [(int(x), True) for x in args.ckpt_seqs.split(",") if x]
        for seq, ckpt in runs:
            rows.append(run_one(torch, transformers, name, seq, args, ckpt))
            print(json.dumps(rows[-1]), flush=True)
    impl = "pytorch" if rows and any(r["impl"] != rows[0]["impl"] for r in rows) else (rows[0]["impl"] if rows else "pytorch")
    print(f"\n{impl} (torch {torch.__version__}, transformers {transformers.__version__}), {args.warmup} warmup + "
          f"{args.steps} timed steps, one packed sequence per step, MFU vs {args.peak_tflops:.0f} TFLOP/s")
    print("| shape | seq | impl | tokens/s | step ms | MFU % | peak GiB | allocated GiB | init loss |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if r["status"] != "ok":
            print(f"| {r['shape']} | {r['seq']} | {r['impl']} | {r['status']} | | | | | |")
            continue
        print(f"| {r['shape']} | {r['seq']} | {r['impl']} | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | {100 * r['mfu']:.1f} | "
              f"{r['peak_gib']:.2f} | {r['allocated_gib']:.2f} | {r['loss']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
