#!/usr/bin/python3
"""Table and plots of the RL-mechanism reproduction (validation/repro/run_device.sh).

Reads RESULTS/repro/<cell>/seed<k>/metrics.rank0.jsonl (RL step lines and the eval_before /
eval_final events), RESULTS/device.txt and, when present, RESULTS/eval/ (the eval-speed run), and
writes to --out: results.md (tables), results.json (every number), reward_curves.png,
zero_variance.png, heldout.png. Needs numpy and matplotlib (Debian python3-numpy,
python3-matplotlib).

  repro_report.py RESULTS... [--out validation/repro]
RESULTS: directories or results.tar.gz archives (e.g. of the eval call and of the repro call),
merged in order.

Per cell, over its seeds: held-out greedy accuracy before and after (mean +- sample std), the
change, the training reward of the last 10 steps, the fraction of zero-variance groups per step
(groups_dropped / groups: every cell drops and refills them, rl.drop_zero_variance = true), samples
kept per step, clip fraction and wall time. Comparisons: difference of the mean final held-out
accuracy between the two sides of each mechanism, with its standard error (Welch) and |t|.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tarfile
import tempfile

CELLS = {  # name: (label, factor groups it belongs to)
    "grpo": "GRPO, clip [0.8, 1.28], filter on, S = 2 (baseline)",
    "grpo_clip_wide": "GRPO, clip [0.72, 1.40] (the seeds' eps 0.28 / 0.40)",
    "gspo": "GSPO, clip [0.8, 1.28]",
    "gspo_clip_wide": "GSPO, clip [0.72, 1.40] (the seeds' recipe)",
    "grpo_no_filter": "GRPO, difficulty filter off",
    "grpo_reuse1": "GRPO, S = 1",
    "grpo_reuse4": "GRPO, S = 4",
}
COMPARISONS = [  # (question, a, b): is b better than a?
    ("GSPO vs GRPO (clip [0.8, 1.28])", "grpo", "gspo"),
    ("GSPO vs GRPO (clip [0.72, 1.40])", "grpo_clip_wide", "gspo_clip_wide"),
    ("expanded vs standard clip (GRPO)", "grpo", "grpo_clip_wide"),
    ("expanded vs standard clip (GSPO)", "gspo", "gspo_clip_wide"),
    ("difficulty filter on vs off", "grpo_no_filter", "grpo"),
    ("S = 2 vs S = 1", "grpo_reuse1", "grpo"),
    ("S = 4 vs S = 1", "grpo_reuse1", "grpo_reuse4"),
]
PANELS = [
    ("policy loss and clip range", ["grpo", "grpo_clip_wide", "gspo", "gspo_clip_wide"]),
    ("difficulty filter", ["grpo", "grpo_no_filter"]),
    ("trajectory reuse", ["grpo_reuse1", "grpo", "grpo_reuse4"]),
]


class InputError(Exception):
    pass


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise InputError(f"{path}:{lineno}: not JSON ({e})")
    return out


def load_run(d):
    """{'steps': [step lines], 'before': acc, 'final': acc, 'wall_s': s} of one run directory."""
    path = os.path.join(d, "metrics.rank0.jsonl")
    if not os.path.isfile(path):
        return None
    lines = read_jsonl(path)
    run = {"steps": [x for x in lines if "step" in x and "event" not in x], "before": None, "final": None}
    for x in lines:
        if x.get("event") == "eval_before":
            run["before"] = x.get("accuracy")
        elif x.get("event") == "eval_final":
            run["final"] = x.get("accuracy")
    info = os.path.join(d, "run.json")
    if os.path.isfile(info):
        with open(info) as f:
            j = json.load(f)
        run["wall_s"] = j.get("wall_ms", 0) / 1000.0
        run["exit"] = j.get("exit")
    return run


def load(results):
    root = os.path.join(results, "repro")
    if not os.path.isdir(root):
        raise InputError(f"{root}: no repro results (run validation/repro/run_device.sh first)")
    cells = {}
    for cell in sorted(os.listdir(root)):
        cdir = os.path.join(root, cell)
        if not os.path.isdir(cdir):
            continue
        runs = {}
        for s in sorted(os.listdir(cdir)):
            if s.startswith("seed"):
                r = load_run(os.path.join(cdir, s))
                if r is not None and r["steps"]:
                    runs[int(s[4:])] = r
        if runs:
            cells[cell] = runs
    if not cells:
        raise InputError(f"{root}: no run has metrics")
    return cells


def mean_std(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return float("nan"), float("nan"), 0
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return m, s, len(xs)


def series(run, key, default=float("nan")):
    return [float(x.get(key, default)) for x in run["steps"]]


def zero_var(run):
    return [x.get("groups_dropped", 0.0) / x["groups"] if x.get("groups") else float("nan") for x in run["steps"]]


def summarize(cells):
    out = {}
    for cell, runs in cells.items():
        rs = list(runs.values())
        last = [sum(series(r, "reward")[-10:]) / len(series(r, "reward")[-10:]) for r in rs]
        zv = [sum(zero_var(r)) / len(r["steps"]) for r in rs]
        kept = [sum(series(r, "kept_samples", 0.0)) / len(r["steps"]) for r in rs]
        clip = [sum(series(r, "clip_frac", 0.0)) / len(r["steps"]) for r in rs]
        delta = [r["final"] - r["before"] for r in rs if r["final"] is not None and r["before"] is not None]
        out[cell] = {
            "label": CELLS.get(cell, cell), "seeds": sorted(runs), "steps": max(len(r["steps"]) for r in rs),
            "heldout_before": mean_std([r["before"] for r in rs]), "heldout_final": mean_std([r["final"] for r in rs]),
            "heldout_change": mean_std(delta), "reward_last10": mean_std(last), "zero_variance_frac": mean_std(zv),
            "kept_samples_per_step": mean_std(kept), "clip_frac": mean_std(clip),
            "wall_s": mean_std([r.get("wall_s") for r in rs]),
            "final_per_seed": {str(s): runs[s]["final"] for s in sorted(runs)},
        }
    return out


def comparisons(summary, cells):
    rows = []
    for q, a, b in COMPARISONS:
        if a not in cells or b not in cells:
            continue
        # Paired per run (after - before): runs of different device calls may start from different
        # SFT checkpoints (CUDA SFT is not bitwise reproducible across processes), and the change
        # removes the start's level from the comparison.
        fa = [r["final"] - r["before"] for r in cells[a].values() if r["final"] is not None and r["before"] is not None]
        fb = [r["final"] - r["before"] for r in cells[b].values() if r["final"] is not None and r["before"] is not None]
        ma, sa, na = mean_std(fa)
        mb, sb, nb = mean_std(fb)
        se = math.sqrt((sa ** 2 / na if na > 1 else 0) + (sb ** 2 / nb if nb > 1 else 0)) if na and nb else float("nan")
        d = mb - ma
        t = d / se if se and se > 0 else float("nan")
        rows.append({"question": q, "a": a, "b": b, "diff": d, "se": se, "t": t, "n": [na, nb]})
    return rows


def pct(ms, digits=1):
    m, s, n = ms
    if n == 0 or math.isnan(m):
        return "n/a"
    return f"{100 * m:.{digits}f} ± {100 * s:.{digits}f}" if n > 1 else f"{100 * m:.{digits}f}"


def num(ms, digits=2):
    m, s, n = ms
    if n == 0 or math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def eval_speed(results):
    d = os.path.join(results, "eval")
    path = os.path.join(d, "eval_summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        s = json.load(f)
    out = {"generated_tokens": s.get("generated_tokens"), "seconds": s.get("seconds"),
           "samples_per_prompt": s.get("samples_per_prompt")}
    out["tokens_per_s"] = out["generated_tokens"] / out["seconds"] if out.get("seconds") else None
    out["prompts"] = sum(t.get("prompts", 0) for t in s.get("tasks", {}).values())
    ex = os.path.join(d, "exit.txt")
    if os.path.isfile(ex):
        with open(ex) as f:
            parts = f.read().split()
        if "wall_ms" in parts:
            out["process_wall_s"] = int(parts[parts.index("wall_ms") + 1]) / 1000.0
    return out


def write_markdown(path, device, summary, comps, speed):
    L = ["# RL mechanisms on the synthetic tasks, and eval speed", ""]
    L += ["Generated by `postproc/repro_report.py` from the outputs of `validation/repro/run_device.sh`.", ""]
    if device:
        L += ["```", device.strip(), "```", ""]
    if speed:
        L += ["## Eval phase: GSM8K test, Qwen2-1.5B shape (random weights)", "",
              "| prompts | samples/prompt | generated tokens | eval time (s) | tokens/s | process wall (s) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {speed['prompts']} | {speed['samples_per_prompt']} | {speed['generated_tokens']} | "
              f"{speed['seconds']:.1f} | {speed['tokens_per_s']:.0f} | {speed.get('process_wall_s', float('nan')):.1f} |", ""]
    L += ["## Held-out accuracy and training signals (mean ± std over seeds)", "",
          "| cell | seeds | steps | held-out before (%) | held-out after (%) | change (points) | "
          "reward, last 10 steps | zero-variance groups (%) | kept samples/step | clip fraction (%) | wall (s) |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for cell in list(CELLS) + sorted(set(summary) - set(CELLS)):
        if cell not in summary:
            continue
        s = summary[cell]
        L.append(f"| `{cell}`: {s['label']} | {len(s['seeds'])} | {s['steps']} | {pct(s['heldout_before'])} | "
                 f"{pct(s['heldout_final'])} | {pct(s['heldout_change'])} | {num(s['reward_last10'], 3)} | "
                 f"{pct(s['zero_variance_frac'])} | {num(s['kept_samples_per_step'], 1)} | {pct(s['clip_frac'], 2)} | "
                 f"{num(s['wall_s'], 1)} |")
    L += ["", "## Comparisons of the change in held-out accuracy", "",
          "Per run the change is held-out accuracy after RL minus before (the run's own SFT start). "
          "Difference of the mean changes (b − a), its standard error (Welch) and |t|; with 5 seeds a side "
          "|t| > 2.3 is about p < 0.05 (two-sided, 8 degrees of freedom).", "",
          "| mechanism | a | b | b − a (points) | s.e. | \\|t\\| |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for c in comps:
        L.append(f"| {c['question']} | `{c['a']}` | `{c['b']}` | {100 * c['diff']:+.1f} | {100 * c['se']:.1f} | "
                 f"{abs(c['t']):.2f} |")
    L += ["", "Plots: `reward_curves.png` (training reward per step, mean ± std over seeds), `zero_variance.png` "
          "(fraction of sampled groups whose rewards are all equal, per step), `heldout.png` (held-out accuracy "
          "after RL per cell, the dashed line before).", ""]
    with open(path, "w") as f:
        f.write("\n".join(L))


def plots(out, cells, summary):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def band(ax, cell, fn, smooth=5):
        runs = list(cells[cell].values())
        n = min(len(r["steps"]) for r in runs)
        y = np.array([fn(r)[:n] for r in runs], dtype=float)
        if smooth > 1 and n >= smooth:  # moving average along the steps, per seed
            k = np.ones(smooth) / smooth
            y = np.array([np.convolve(row, k, mode="valid") for row in y])
        x = np.arange(1, y.shape[1] + 1) + (smooth - 1 if smooth > 1 and n >= smooth else 0)
        m, s = np.nanmean(y, axis=0), np.nanstd(y, axis=0, ddof=1) if y.shape[0] > 1 else np.zeros(y.shape[1])
        ax.plot(x, m, label=f"{cell} ({len(runs)})")
        ax.fill_between(x, m - s, m + s, alpha=0.2)

    def label(ax, title, ylabel):
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)

    panels = [(t, [c for c in cs if c in cells]) for t, cs in PANELS]
    panels = [(t, cs) for t, cs in panels if cs]
    other = sorted(set(cells) - {c for _, cs in PANELS for c in cs})
    if other:
        panels.append(("other", other))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, cs) in zip(axes[0], panels):
        for c in cs:
            band(ax, c, lambda r: series(r, "reward"))
        label(ax, title, "training reward (5-step mean)")
    save(fig, "reward_curves.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in [c for c in ("grpo", "grpo_no_filter") if c in cells] or sorted(cells):
        band(ax, c, zero_var, smooth=1)
    label(ax, "difficulty filter on vs off", "zero-variance groups / groups sampled")
    save(fig, "zero_variance.png")

    order = [c for c in CELLS if c in summary] + sorted(set(summary) - set(CELLS))
    fig, ax = plt.subplots(figsize=(1.2 * len(order) + 2, 4))
    m = [100 * summary[c]["heldout_final"][0] for c in order]
    s = [100 * (summary[c]["heldout_final"][1] if summary[c]["heldout_final"][2] > 1 else 0) for c in order]
    ax.bar(range(len(order)), m, yerr=s, capsize=4)
    for i, c in enumerate(order):
        ax.plot([i - 0.4, i + 0.4], [100 * summary[c]["heldout_before"][0]] * 2, "k--", lw=1)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("held-out accuracy after RL (%)")
    save(fig, "heldout.png")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="results.tar.gz of validation/repro/run_device.sh, or directories")
    ap.add_argument("--out", default="validation/repro", help="where results.md, results.json and the plots go")
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args(argv)
    try:
        tmp = tempfile.TemporaryDirectory()
        devices = []
        for src in a.results:
            if os.path.isdir(src):
                shutil.copytree(src, tmp.name, dirs_exist_ok=True)
                if os.path.isfile(os.path.join(src, "device.txt")):
                    with open(os.path.join(src, "device.txt")) as f:
                        devices.append(f"[{os.path.basename(src.rstrip('/'))}]\n" + f.read().strip())
                continue
            if not os.path.isfile(src):
                raise InputError(f"{src}: not found")
            with tarfile.open(src) as t:
                members = [m for m in t.getmembers() if m.isfile() or m.isdir()]
                for m in members:
                    if m.name.startswith("/") or ".." in m.name.split("/"):
                        raise InputError(f"{src}: unsafe member path '{m.name}'")
                t.extractall(tmp.name, members=members)
            if os.path.isfile(os.path.join(tmp.name, "device.txt")):
                with open(os.path.join(tmp.name, "device.txt")) as f:
                    devices.append(f"[{src}]\n" + f.read().strip())
                os.remove(os.path.join(tmp.name, "device.txt"))
        a.results = tmp.name
        cells = load(a.results)
        summary = summarize(cells)
        comps = comparisons(summary, cells)
        speed = eval_speed(a.results)
        device = "\n".join(devices)
        os.makedirs(a.out, exist_ok=True)
        write_markdown(os.path.join(a.out, "results.md"), device, summary, comps, speed)
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump({"device": device, "cells": summary, "comparisons": comps, "eval_speed": speed}, f, indent=1)
        if not a.no_plots:
            plots(a.out, cells, summary)
    except (InputError, OSError, tarfile.TarError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(os.path.join(a.out, "results.md")) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
