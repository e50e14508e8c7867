#!/usr/bin/env python3
"""Checks a directory written by `temper export` against transformers.

Loads DIR with transformers' AutoModelForCausalLM (fp32, eager attention, TF32 off),
runs the input ids of a temper logits file (JSON {"input_ids": [...], "logits":
[[...]]}, as tests/unit/test_hf_checkpoint.cpp writes it to DIR/temper_logits.json
when TEMPER_HF_EXPORT_KEEP=DIR is set) and compares the logits. Prints the max
absolute and relative error; exits 1 when they exceed the tolerance, 2 when the
directory does not load.

    TEMPER_HF_EXPORT_KEEP=/tmp/exp build/tests/test_hf_checkpoint --gtest_filter='*ExportSubcommand*'
    python3 validation/hf/check_export.py /tmp/exp [--logits FILE] [--tol 1e-4] [--device cuda]
    python3 validation/hf/check_export.py /tmp/exp --vllm    # also load it with vLLM and compare logprobs
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="directory written by `temper export`")
    ap.add_argument("--logits", help="temper's logits JSON (default DIR/temper_logits.json)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs error allowed, relative to max |logit|")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vllm", action="store_true", help="also load with vLLM and compare top-1 tokens")
    args = ap.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref = json.load(open(args.logits or os.path.join(args.dir, "temper_logits.json")))
    ids = ref["input_ids"]
    want = torch.tensor(ref["logits"], dtype=torch.float64)

    try:
        cfg = AutoConfig.from_pretrained(args.dir)
        model = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.float32, attn_implementation="eager")
    except Exception as e:  # noqa: BLE001 - any load failure is the finding
        print(f"check_export: transformers cannot load {args.dir}: {e}")
        return 2
    model = model.to(args.device).eval()
    print(f"check_export: {args.dir}: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} "
          f"parameters, tie_word_embeddings={cfg.tie_word_embeddings}")
    with torch.no_grad():
        got = model(torch.tensor([ids], device=args.device)).logits[0].double().cpu()
    if got.shape != want.shape:
        print(f"check_export: logits shape {tuple(got.shape)} != temper's {tuple(want.shape)}")
        return 1
    abs_err = (got - want).abs().max().item()
    rel_err = abs_err / want.abs().max().item()
    top1 = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    print(f"check_export: transformers vs temper logits: max abs err {abs_err:.3e}, max rel err {rel_err:.3e}, "
          f"top-1 agreement {100 * top1:.1f}%")
    ok = rel_err <= args.tol

    if args.vllm:
        from vllm import LLM, SamplingParams
        llm = LLM(model=args.dir, dtype="float32", enforce_eager=True, gpu_memory_utilization=0.3,
                  skip_tokenizer_init=True)
        # prompt logprobs of the ids under vLLM vs log_softmax of temper's logits
        sp = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        out = llm.generate([{"prompt_token_ids": ids}], sp)[0]
        lp_t = torch.log_softmax(want, -1)
        worst = 0.0
        for t in range(1, len(ids)):
            entry = out.prompt_logprobs[t]
            worst = max(worst, abs(entry[ids[t]].logprob - lp_t[t - 1, ids[t]].item()))
        print(f"check_export: vLLM prompt logprobs vs temper: max abs err {worst:.3e}")
        ok = ok and worst <= 1e-3
    print("check_export:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
