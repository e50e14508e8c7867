#!/usr/bin/env python3
"""A tiny Motif-format checkpoint and its reference logits, from an implementation of the
released Motif architecture written independently of temper (from the public model code:
Motif's vLLM model file and grouped-differential-attention backend, the MLX port; the
sources are listed in docs/motif.md).

  python3 motif_fixture.py write DIR        (pure Python, no torch) the checkpoint: config.json,
                                            3 safetensors shards + model.safetensors.index.json,
                                            f32 weights from a fixed-seed generator
  python3 motif_fixture.py reference DIR    (torch) DIR/reference.json: input ids, logits (float64
                                            forward of the f32 weights), mean next-token loss
  python3 motif_fixture.py check DIR REF    (torch) loads another Motif-format directory (e.g.
                                            `temper export` of the fixture) and compares its logits
                                            with REF (reference.json); exit 1 above 1e-5 relative

How the committed fixture (tests/fixtures/motif/tiny) was made: `write` here, `reference` on the
GPU machine (the only one with torch), `check` there on temper's export of it
(validation/motif/run_fixture_device.sh).

The model, per layer (names as in the released checkpoints):
  x = input_layernorm(h)                                       RMSNorm, rms_norm_eps
  q = q_proj(x) [T, Hq, D], k = k_proj(x), v = v_proj(x) [T, Hkv, D]; RoPE (rotate half) on q, k
  q heads: G groups of (r signal heads, 1 noise head), r = (Hq - G) / G  -> q1 [T, G r, D], q2 [T, G, D]
  k, v heads: pairs (path 1, path 2)                                     -> k1, k2, v1, v2 [T, Hkv/2, D]
  a1 = [attn(q1, k1, v1) | attn(q1, k1, v2)]   a2 = [attn(q2, k2, v1) | attn(q2, k2, v2)]   (causal, GQA)
  lambda = exp(lambda_q1 . lambda_k1) - exp(lambda_q2 . lambda_k2) + lambda_init,
  lambda_init = 0.8 - 0.6 exp(-0.3 (layer - 1)) for the 0-based layer
  o = subln(a1 - lambda repeat_interleave(a2, r)) (1 - lambda_init)    RMSNorm over 2D, attn_rms_norm_eps
  h = h + o_proj(o)
  h = h + down_proj(PolyNorm(gate_proj(y)) * up_proj(y)),  y = post_attention_layernorm(h)
  PolyNorm(z) = w0 N(z^3) + w1 N(z^2) + w2 N(z) + b,  N(t) = t / sqrt(mean(t^2) + 1e-6)
  logits = lm_head(norm(h))
"""
import json
import math
import os
import struct
import sys

CONFIG = {
    "architectures": ["MotifForCausalLM"],
    "model_type": "motif",
    "vocab_size": 61,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 3,
    "num_attention_heads": 10,   # 8 signal + 2 noise-control heads: groups of 4 + 1, as 12.7B's 32 + 8
    "num_noise_heads": 2,
    "num_key_value_heads": 4,    # 2 signal-key heads + 2 noise-key heads; values: 2 heads of 2 x head_dim
    "head_dim": 8,               # num_attention_heads x head_dim != hidden_size, as in 12.7B
    "rope_theta": 500.0,
    "rms_norm_eps": 1e-6,
    "attn_rms_norm_eps": 1e-5,
    "hidden_act": "poly_norm",
    "tie_word_embeddings": False,
    "use_bias": False,
    "k_ratio": 1,
    "max_position_embeddings": 64,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}
INPUTS = [[3, 17, 42, 8, 8, 59, 0, 23, 31, 12, 5, 44, 60], [7, 1, 50, 29, 33, 2, 18, 47, 11]]
SHARDS = 3


# ---------------------------------------------------------------------------------------------
# Weights: splitmix64 -> uniform, the same numbers on every machine (no numpy, no torch).

class Gen:
    def __init__(self, seed):
        self.s = seed & (2**64 - 1)

    def u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return z ^ (z >> 31)

    def uniform(self, lo, hi):
        return lo + (hi - lo) * ((self.u64() >> 11) / float(1 << 53))


def tensor_specs(c):
    """(name, shape, lo, hi) of every tensor, in a fixed order."""
    C, V, F, L = c["hidden_size"], c["vocab_size"], c["intermediate_size"], c["num_hidden_layers"]
    Hq, Hkv, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    S = Hq - c["num_noise_heads"]
    w = lambda fan_in: math.sqrt(3.0 / fan_in)
    specs = [("model.embed_tokens.weight", [V, C], -1.0, 1.0)]
    for i in range(L):
        p = "model.layers.%d." % i
        specs += [
            (p + "input_layernorm.weight", [C], 0.7, 1.3),
            (p + "self_attn.q_proj.weight", [Hq * D, C], -w(C), w(C)),
            (p + "self_attn.k_proj.weight", [Hkv * D, C], -w(C), w(C)),
            (p + "self_attn.v_proj.weight", [Hkv * D, C], -w(C), w(C)),
            (p + "self_attn.lambda_q1", [D], -0.3, 0.3),
            (p + "self_attn.lambda_k1", [D], -0.3, 0.3),
            (p + "self_attn.lambda_q2", [D], -0.3, 0.3),
            (p + "self_attn.lambda_k2", [D], -0.3, 0.3),
            (p + "self_attn.subln.weight", [2 * D], 0.7, 1.3),
            (p + "self_attn.o_proj.weight", [C, 2 * S * D], -w(2 * S * D), w(2 * S * D)),
            (p + "post_attention_layernorm.weight", [C], 0.7, 1.3),
            (p + "mlp.gate_proj.weight", [F, C], -w(C), w(C)),
            (p + "mlp.up_proj.weight", [F, C], -w(C), w(C)),
            (p + "mlp.down_proj.weight", [C, F], -w(F), w(F)),
            (p + "mlp.act_fn.weight", [3], 0.15, 0.5),
            (p + "mlp.act_fn.bias", [1], -0.1, 0.1),
        ]
    specs += [("model.norm.weight", [C], 0.7, 1.3), ("lm_head.weight", [V, C], -w(C), w(C))]
    return specs


def write_safetensors(path, tensors):
    """tensors: list of (name, shape, list of floats) stored as little-endian f32."""
    header, blobs, off = {}, [], 0
    for name, shape, vals in tensors:
        b = struct.pack("<%df" % len(vals), *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write(out):
    os.makedirs(out, exist_ok=True)
    g = Gen(20251107)
    tensors = []
    for name, shape, lo, hi in tensor_specs(CONFIG):
        n = 1
        for s in shape:
            n *= s
        tensors.append((name, shape, [g.uniform(lo, hi) for _ in range(n)]))
    total = sum(4 * len(t[2]) for t in tensors)
    per, shards, cur, size = total // SHARDS + 1, [], [], 0
    for t in tensors:
        cur.append(t)
        size += 4 * len(t[2])
        if size >= per and len(shards) < SHARDS - 1:
            shards.append(cur)
            cur, size = [], 0
    shards.append(cur)
    weight_map = {}
    for i, sh in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        write_safetensors(os.path.join(out, fname), sh)
        for name, _, _ in sh:
            weight_map[name] = fname
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    print("wrote", out, len(tensors), "tensors in", len(shards), "shards,", total, "bytes")


# ---------------------------------------------------------------------------------------------
# The model (torch, float64).

def load_dir(path, torch):
    cfg = json.load(open(os.path.join(path, "config.json")))
    index = os.path.join(path, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else [
        "model.safetensors"]
    w = {}
    for fname in files:
        raw = open(os.path.join(path, fname), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        data = raw[8 + n:]
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            buf = bytearray(data[a:b])
            if info["dtype"] == "F32":
                t = torch.frombuffer(buf, dtype=torch.float32)
            elif info["dtype"] == "F64":
                t = torch.frombuffer(buf, dtype=torch.float64)
            elif info["dtype"] == "BF16":
                t = ((torch.frombuffer(buf, dtype=torch.int16).to(torch.int32) & 0xFFFF) << 16).view(torch.float32)
            else:
                raise SystemExit("unsupported dtype %s of %s" % (info["dtype"], name))
            w[name] = t.to(torch.float64).reshape(info["shape"])
    return cfg, w


def forward(cfg, w, ids, torch):
    T = len(ids)
    C, D, L = cfg["hidden_size"], cfg["head_dim"], cfg["num_hidden_layers"]
    Hq, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    G = cfg.get("num_noise_heads") or Hq // 2
    r = (Hq - G) // G
    eps, aeps = cfg["rms_norm_eps"], cfg["attn_rms_norm_eps"]

    def rms(x, weight, e):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + e) * weight

    pos = torch.arange(T, dtype=torch.float64)
    inv = cfg["rope_theta"] ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = pos[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]

    def rope(x):  # [T, heads, D], rotate half
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    causal = torch.ones(T, T, dtype=torch.bool).tril()

    def attn(q, k, v):  # q [T, hq, D], k, v [T, hk, D], GQA: q head i uses kv head i // (hq / hk)
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        s = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(D)
        s = s.masked_fill(~causal, float("-inf"))
        return torch.einsum("hij,jhd->ihd", torch.softmax(s, -1), v)

    def polynorm(z, wt, b):
        n = lambda t: t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6)
        return wt[0] * n(z ** 3) + wt[1] * n(z ** 2) + wt[2] * n(z) + b[0]

    h = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for l in range(L):
        p = "model.layers.%d." % l
        x = rms(h, w[p + "input_layernorm.weight"], eps)
        q = rope((x @ w[p + "self_attn.q_proj.weight"].T).view(T, Hq, D))
        k = rope((x @ w[p + "self_attn.k_proj.weight"].T).view(T, Hkv, D))
        v = (x @ w[p + "self_attn.v_proj.weight"].T).view(T, Hkv, D)
        qg = q.view(T, G, r + 1, D)
        q1, q2 = qg[:, :, :r].reshape(T, G * r, D), qg[:, :, r:].reshape(T, G, D)
        kp, vp = k.view(T, Hkv // 2, 2, D), v.view(T, Hkv // 2, 2, D)
        k1, k2, v1, v2 = kp[:, :, 0], kp[:, :, 1], vp[:, :, 0], vp[:, :, 1]
        a1 = torch.cat([attn(q1, k1, v1), attn(q1, k1, v2)], -1)
        a2 = torch.cat([attn(q2, k2, v1), attn(q2, k2, v2)], -1).repeat_interleave(r, 1)
        lam_init = 0.8 - 0.6 * math.exp(-0.3 * (l - 1))
        lam = (torch.exp((w[p + "self_attn.lambda_q1"] * w[p + "self_attn.lambda_k1"]).sum())
               - torch.exp((w[p + "self_attn.lambda_q2"] * w[p + "self_attn.lambda_k2"]).sum()) + lam_init)
        o = rms(a1 - lam * a2, w[p + "self_attn.subln.weight"], aeps) * (1 - lam_init)
        h = h + o.reshape(T, -1) @ w[p + "self_attn.o_proj.weight"].T
        y = rms(h, w[p + "post_attention_layernorm.weight"], eps)
        act = polynorm(y @ w[p + "mlp.gate_proj.weight"].T, w[p + "mlp.act_fn.weight"], w[p + "mlp.act_fn.bias"])
        h = h + (act * (y @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return rms(h, w["model.norm.weight"], eps) @ head.T


def logits_and_loss(path, torch):
    cfg, w = load_dir(path, torch)
    logits, nll, count = [], 0.0, 0
    for ids in INPUTS:
        lg = forward(cfg, w, ids, torch)
        logits.append(lg)
        lp = torch.log_softmax(lg[:-1], -1)
        nll -= lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()
        count += len(ids) - 1
    return logits, nll / count


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("write", "reference", "check"):
        raise SystemExit(__doc__)
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write":
        return write(path)
    import torch
    torch.set_default_dtype(torch.float64)
    logits, loss = logits_and_loss(path, torch)
    if mode == "reference":
        ref = {"input_ids": INPUTS, "logits": [lg.reshape(-1).tolist() for lg in logits], "loss": loss,
               "note": "float64 forward of the f32 weights by validation/motif/motif_fixture.py (torch %s)" %
                       torch.__version__}
        with open(os.path.join(path, "reference.json"), "w") as f:
            json.dump(ref, f)
        print("reference: loss %.12f, logits %s" % (loss, [tuple(lg.shape) for lg in logits]))
        return
    ref = json.load(open(sys.argv[3]))
    worst = 0.0
    for lg, want in zip(logits, ref["logits"]):
        want = torch.tensor(want).reshape(lg.shape)
        worst = max(worst, ((lg - want).abs().max() / want.abs().max()).item())
    loss_err = abs(loss - ref["loss"]) / abs(ref["loss"])
    print("check %s: max relative logit error %.3e, loss %.12f (reference %.12f, rel %.3e)" %
          (path, worst, loss, ref["loss"], loss_err))
    sys.exit(0 if worst <= 1e-5 and loss_err <= 1e-5 else 1)


if __name__ == "__main__":
    main()
