#!/usr/bin/env python3
"""Makes the reference fixtures temper's tokenizer / safetensors tests compare against.

Run on a machine with `tokenizers`, `transformers` and `torch` (the GPU machine has them):
    python3 validation/hf/make_fixtures.py .cache/hf-tokenizers OUTDIR
It writes into OUTDIR:
  tokenizer_ids.json   exact ids from HF `tokenizers` for a set of strings (Qwen3, Llama-3)
  chat_renders.json    transformers' apply_chat_template output for several conversations
  models/<name>/       tiny random Qwen2 / Qwen3 / Llama models (save_pretrained, safetensors)
                       plus reference.json: input ids and fp32 logits from transformers (eager)
The outputs are committed under tests/fixtures/hf (small); this script is how they were made.
"""
import json
import os
import sys
import time

import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer

tok_root, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)

STRINGS = [
    "Hello world",
    "Hello, world! How are you doing today?",
    "  leading spaces and   runs of    spaces  ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows line ends",
    "Numbers: 1 12 123 1234 12345 1234567890 3.14159 -42 1e10 0x1F",
    "Contractions: I'm you're he's we'll they'd can't WON'T It'S",
    "日本語のテキストと中文文本，还有한국어 텍스트.",
    "Emoji: 😀🎉👍🏽 family: 👨‍👩‍👧‍👦 flags: 🇫🇷🇯🇵",
    "def f(x):\n    return x**2  # square\n\nprint(f(3))\n",
    "int main() { std::vector<int> v{1,2,3}; for (auto& x : v) x *= 2; }",
    "Ünïcödé àccents: naïve café résumé Straße ÆØÅ",
    "Math: \\boxed{\\frac{1}{2}} and $x^2 + y^2 = z^2$",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nsimple\n</think>\n\n4<|im_end|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "mixedCASEWordsAndDigits123abc456",
    "a" * 100,
    "   ",
    "\n",
    "",
    "Ελληνικά και русский текст, العربية, עברית, हिन्दी",
    "URLs: https://example.com/path?query=1&x=y#frag user@mail.org",
    "!!!???...,,,;;;:::---___***",
]

result = {"strings": STRINGS, "tokenizers": {}}
for name in ("qwen3", "llama3"):
    path = os.path.join(tok_root, name, "tokenizer.json")
    tk = Tokenizer.from_file(path)
    entry = {"plain": [], "with_special": []}
    for s in STRINGS:
        entry["plain"].append(tk.encode(s, add_special_tokens=False).ids)
        entry["with_special"].append(tk.encode(s, add_special_tokens=True).ids)
    # decode of every id list back to text (skip_special_tokens=False)
    entry["decoded"] = [tk.decode(ids, skip_special_tokens=False) for ids in entry["plain"]]
    # single-token decodes of a few ids (byte-level pieces)
    entry["id_to_token"] = {str(i): tk.id_to_token(i) for i in (0, 1, 13, 198, 220, 1000, 50000)}
    # throughput of the reference (Rust) encoder on ~2 MB, one call per line
    text = "\n".join(STRINGS) * 1
    corpus = (text + "\n") * (2_000_000 // len(text))
    lines = corpus.split("\n")
    t0 = time.time()
    for line in lines:
        tk.encode(line, add_special_tokens=False)
    dt = time.time() - t0
    entry["hf_encode_MBps_one_call_per_line"] = len(corpus.encode()) / dt / 1e6
    result["tokenizers"][name] = entry
json.dump(result, open(os.path.join(out, "tokenizer_ids.json"), "w"), ensure_ascii=False)

CONVS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."},
     {"role": "assistant", "content": "<think>\n2 is prime.\n</think>\n\n2"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Sort 3 1 2"}, {"role": "assistant", "content": "<think>easy</think>1 2 3"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "  spaced question  "}],
]
renders = {"conversations": CONVS, "templates": {}}
for name in ("qwen3", "llama3"):
    tk = AutoTokenizer.from_pretrained(os.path.join(tok_root, name))
    entries = []
    for conv in CONVS:
        e = {}
        e["full"] = tk.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)
        prompt_conv = conv[:-1] if conv[-1]["role"] == "assistant" else conv
        e["prompt_gen"] = tk.apply_chat_template(prompt_conv, tokenize=False, add_generation_prompt=True)
        if name == "qwen3":
            e["prompt_gen_nothink"] = tk.apply_chat_template(prompt_conv, tokenize=False, add_generation_prompt=True,
                                                             enable_thinking=False)
        e["full_ids"] = tk.apply_chat_template(conv, tokenize=True, add_generation_prompt=False)
        if hasattr(e["full_ids"], "keys"):
            e["full_ids"] = list(e["full_ids"]["input_ids"])
        entries.append(e)
    renders["templates"][name] = entries
json.dump(renders, open(os.path.join(out, "chat_renders.json"), "w"), ensure_ascii=False, indent=1)

# ---- tiny random models ------------------------------------------------------
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

torch.manual_seed(0)
common = dict(vocab_size=384, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              rms_norm_eps=1e-6, rope_theta=10000.0)
models = {
    "qwen2_tied_sharded": (Qwen2Config(**common, tie_word_embeddings=True), Qwen2ForCausalLM, "60KB"),
    "qwen3_untied": (Qwen3Config(**common, head_dim=24, tie_word_embeddings=False), Qwen3ForCausalLM, None),
    "llama_untied": (LlamaConfig(**common, tie_word_embeddings=False), LlamaForCausalLM, None),
}
ids = [[1, 17, 200, 5, 99, 383, 0, 42, 42, 7, 250, 128, 3, 64]]
for name, (cfg, cls, shard) in models.items():
    cfg._attn_implementation = "eager"
    m = cls(cfg).float().eval()
    # make biases / norm weights non-trivial so a missed tensor shows up in the logits
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias") or "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    d = os.path.join(out, "models", name)
    kw = {"safe_serialization": True}
    if shard:
        kw["max_shard_size"] = shard
    m.save_pretrained(d, **kw)
    with torch.no_grad():
        logits = m(torch.tensor(ids)).logits[0].float()
    json.dump({"input_ids": ids[0], "logits": logits.tolist(),
               "params": {n: list(p.shape) for n, p in m.named_parameters()}},
              open(os.path.join(d, "reference.json"), "w"))
    print(name, "files:", sorted(os.listdir(d)))
print("done")
