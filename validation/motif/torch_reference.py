#!/usr/bin/env python3
"""Independent PyTorch implementation of temper's Motif architecture (grouped
differential attention + PolyNorm MLP), written from the equations, checked
against a temper dump (validation/bench/bench_motif.cpp dump DIR [cpu|cuda]).

Usage:  python3 validation/motif/torch_reference.py DIR [--device cuda] [--dtype float64]

Reads DIR/config.json, the batch, param.*.npy; runs forward + backward of
L = sum_n dlogp[n] * logp[n] with autograd; prints the max relative error
(max |ref - temper| / max |ref|) of log-probs, logits and every gradient, and
exits non-zero when one exceeds the tolerance (1e-9 for an f64 CPU dump, 5e-2
for a bf16 CUDA dump).

Equations (see src/model/differential_attention.h, src/model/polynorm.h; the released layout):
  Q = x Wq^T [N,H+G,D] in G groups of (H/G signal heads, 1 noise head) -> Q1 [N,H,D], Q2 [N,G,D]
  K, V = x W^T [N,2 KVH,D] in pairs (path 1, path 2) -> K1, K2, V1, V2 [N,KVH,D]; RoPE on Q, K
  A1 = softmax(Q1 K1^T / sqrt(D) + causal doc mask) [V1 | V2]   (GQA: head h uses kv h // (H/KVH))
  A2 = softmax(Q2 K2^T / sqrt(D) + mask) [V1 | V2]             (noise head g uses kv g // (G/KVH))
  lambda = exp(lq1.lk1) - exp(lq2.lk2) + lambda_init
  O[h] = (1 - lambda_init) * RMSNorm_2D(A1[h] - lambda * A2[h // (H/G)]) * w_head
  MLP: gate, up = split(x Wgu^T); act = PolyNorm(gate) * up,
  PolyNorm(z) = c0 N(z^3) + c1 N(z^2) + c2 N(z) + c3,  N(z) = z / sqrt(mean(z^2) + eps)
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta):
    d = x.shape[-1]
    inv = theta ** (-torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)
    ang = pos.to(torch.float64)[:, None] * inv[None, :]
    cos = torch.cos(ang).to(x.dtype)[:, None, :]
    sin = torch.sin(ang).to(x.dtype)[:, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(q, k, v, cu):
    """Causal attention within each document; q [N,Hq,D], k,v [N,KVH,D] (GQA)."""
    n, hq, d = q.shape
    rep = hq // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    outs = []
    for s in range(len(cu) - 1):
        a, b = int(cu[s]), int(cu[s + 1])
        qs, ks, vs = q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1)
        scores = qs @ ks.transpose(1, 2) / math.sqrt(d)
        mask = torch.ones(b - a, b - a, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        outs.append((torch.softmax(scores, dim=-1) @ vs).transpose(0, 1))
    return torch.cat(outs, dim=0)


def polynorm(z, c, eps):
    def nrm(t):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps)
    return c[0] * nrm(z ** 3) + c[1] * nrm(z ** 2) + c[2] * nrm(z) + c[3]


def forward(cfg, P, tokens, targets, positions, cu):
    H, G, KVH, D, F = cfg["n_heads"], cfg["n_noise_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["ffn_dim"]
    eps, theta = cfg["norm_eps"], cfg["rope_theta"]
    diff = cfg["attention"] != "standard"
    n = tokens.shape[0]
    x = P["embed"][tokens]
    for l in range(cfg["n_layers"]):
        p = f"layers.{l}."
        h = rmsnorm(x, P[p + "attn_norm.weight"], eps)
        if diff:  # the released layout (src/model/differential_attention.h)
            r = H // G
            q = rope((h @ P[p + "attn.q.weight"].T).view(n, H + G, D), positions, theta)
            k = rope((h @ P[p + "attn.k.weight"].T).view(n, 2 * KVH, D), positions, theta)
            v = (h @ P[p + "attn.v.weight"].T).view(n, 2 * KVH, D)
            qg = q.view(n, G, r + 1, D)
            q1, q2 = qg[:, :, :r].reshape(n, H, D), qg[:, :, r].reshape(n, G, D)
            k1, k2, v1, v2 = k[:, 0::2], k[:, 1::2], v[:, 0::2], v[:, 1::2]
            a1 = torch.cat([attention(q1, k1, v1, cu), attention(q1, k1, v2, cu)], dim=-1)
            a2 = torch.cat([attention(q2, k2, v1, cu), attention(q2, k2, v2, cu)], dim=-1)
            lam_v = P[p + "attn.lambda"]
            lam_init = cfg["lambda_init"][l]
            lam = torch.exp((lam_v[0] * lam_v[1]).sum()) - torch.exp((lam_v[2] * lam_v[3]).sum()) + lam_init
            y = a1 - lam * a2.repeat_interleave(r, dim=1)
            o = ((1.0 - lam_init) * rmsnorm(y, P[p + "attn.head_norm.weight"], cfg["diff_norm_eps"])).reshape(n, -1)
        else:
            q = rope((h @ P[p + "attn.q.weight"].T).view(n, H, D), positions, theta)
            k = rope((h @ P[p + "attn.k.weight"].T).view(n, KVH, D), positions, theta)
            v = (h @ P[p + "attn.v.weight"].T).view(n, KVH, D)
            o = attention(q, k, v, cu).reshape(n, H * D)
        x = x + o @ P[p + "attn.o.weight"].T
        h = rmsnorm(x, P[p + "mlp_norm.weight"], eps)
        gu = h @ P[p + "mlp.gate_up.weight"].T
        gate, up = gu[:, :F], gu[:, F:]
        if cfg["mlp_activation"] == "polynorm":
            act = polynorm(gate, P[p + "mlp.polynorm"], cfg["polynorm_eps"]) * up
        else:
            act = torch.nn.functional.silu(gate) * up
        x = x + act @ P[p + "mlp.down.weight"].T
    x = rmsnorm(x, P["final_norm.weight"], eps)
    head = P["embed"] if cfg["tie_embeddings"] else P["lm_head.weight"]
    logits = x @ head.T
    lsm = torch.log_softmax(logits, dim=-1)
    safe = targets.clamp(min=0)
    logp = lsm.gather(1, safe[:, None])[:, 0] * (targets >= 0)
    return logits, logp


def rel(ref, got):
    ref = ref.detach().double().cpu()
    got = torch.as_tensor(got, dtype=torch.float64)
    return float((ref - got).abs().max() / ref.abs().max().clamp(min=1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--tol", type=float, default=None)
    a = ap.parse_args()
    dt = getattr(torch, a.dtype)
    dev = torch.device(a.device)
    with open(os.path.join(a.dir, "config.json")) as f:
        cfg = json.load(f)
    load = lambda name: np.load(os.path.join(a.dir, name))
    tokens = torch.as_tensor(load("tokens.npy").astype(np.int64), device=dev)
    targets = torch.as_tensor(load("targets.npy").astype(np.int64), device=dev)
    positions = torch.as_tensor(load("positions.npy").astype(np.int64), device=dev)
    cu = load("cu_seqlens.npy").astype(np.int64).tolist()
    dlogp = torch.as_tensor(load("dlogp.npy"), dtype=dt, device=dev)
    with open(os.path.join(a.dir, "params.txt")) as f:
        names = [s.strip() for s in f if s.strip()]
    P = {nm: torch.tensor(load(f"param.{nm}.npy"), dtype=dt, device=dev, requires_grad=True) for nm in names}
    logits, logp = forward(cfg, P, tokens, targets, positions, cu)
    (dlogp * logp).sum().backward()
    tol = a.tol if a.tol is not None else (1e-9 if cfg["backend"] == "cpu" else 5e-2)
    rows = [("logp", rel(logp, load("logp.npy"))), ("logits", rel(logits, load("logits.npy")))]
    for nm in names:
        rows.append(("grad " + nm, rel(P[nm].grad, load(f"grad.{nm}.npy"))))
    print(f"temper ({cfg['backend']} dump, {cfg['attention']} + {cfg['mlp_activation']}) vs PyTorch reference "
          f"({a.dtype} on {a.device}): max |ref - temper| / max |ref|")
    worst = 0.0
    for name, e in rows:
        print(f"  {name:40s} {e:.3e}")
        worst = max(worst, e)
    ok = worst <= tol
    print(f"RESULT motif_torch_reference {cfg['backend']} worst {worst:.3e} tol {tol:.0e} {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
