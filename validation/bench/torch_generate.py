#!/usr/bin/env python3
"""HF transformers generate() reference for bench_rollout: random-init Qwen2 shapes, bf16,
sdpa, `batch` prompts of `prompt_len` random tokens, `new_tokens` sampled each (min_new_tokens
= max_new_tokens so every sequence runs to the budget), temperature 1. Prints the same table
columns and a JSON line per row.
    python3 torch_generate.py [--shapes qwen2-1.5b] [--batches 64,256] [--prompt-len 128] [--new-tokens 256]
"""
import argparse
import json
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

SHAPES = {
    "qwen2-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                       intermediate_size=4864),
    "qwen2-1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                       intermediate_size=8960),
}

ap = argparse.ArgumentParser()
ap.add_argument("--shapes", default="qwen2-1.5b")
ap.add_argument("--batches", default="64,256")
ap.add_argument("--prompt-len", type=int, default=128)
ap.add_argument("--new-tokens", type=int, default=256)
a = ap.parse_args()
print("| shape | batch | prompt | new | gen tok/s | seconds | peak GiB |\n|---|---:|---:|---:|---:|---:|---:|")
for shape in a.shapes.split(","):
    cfg = Qwen2Config(vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768,
                      **SHAPES[shape])
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).cuda().eval()
    for b in [int(x) for x in a.batches.split(",")]:
        ids = torch.randint(0, cfg.vocab_size, (b, a.prompt_len), device="cuda")
        mask = torch.ones_like(ids)
        kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, pad_token_id=0, eos_token_id=None)
        try:
            with torch.no_grad():
                model.generate(ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, **kw)
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.time()
                out = model.generate(ids, attention_mask=mask, max_new_tokens=a.new_tokens,
                                     min_new_tokens=a.new_tokens, **kw)
                torch.cuda.synchronize()
            s = time.time() - t0
            toks = (out.shape[1] - a.prompt_len) * b
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"| {shape} | {b} | {a.prompt_len} | {a.new_tokens} | {toks / s:.0f} | {s:.2f} | {peak:.1f} |")
            print("JSON " + json.dumps({"bench": "rollout", "impl": "hf_generate", "shape": shape, "batch": b,
                                        "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
                                        "tokens_per_s": toks / s, "seconds": s, "peak_gib": peak}))
        except torch.cuda.OutOfMemoryError:
            print(f"| {shape} | {b} | {a.prompt_len} | {a.new_tokens} | OOM | | |")
            torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()
