#!/usr/bin/python3
"""Plots of an RL run: reward, accuracy, response length, clip fraction and
kept/discarded samples over steps, as PNG files.

Sources (either or both):
  --metrics FILE   the run's metrics JSONL (lines with "step"; other lines are skipped).
                   Keys understood (first found wins): reward_mean|reward,
                   accuracy|acc, response_len_mean|resp_len, clip_frac (or
                   clip_frac_low + clip_frac_high), kept|kept_samples,
                   discarded|unparsable.
  --dumps DIR      trajectory dumps traj_*.h5 (docs/trajectory_format.md); per dump:
                   mean reward, accuracy (verdict 0), mean response length, kept and
                   discarded counts, clip fraction from metrics/ if stored.

  plot_rl.py --metrics runs/x/metrics.rank0.jsonl --dumps runs/x/trajectories/rank0 --out plots/
"""
import argparse
import glob
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ALIASES = {
    "reward": ["reward_mean", "reward"],
    "accuracy": ["accuracy", "acc"],
    "response_length": ["response_len_mean", "resp_len", "response_length"],
    "clip_frac": ["clip_frac"],
    "kept": ["kept", "kept_samples"],
    "discarded": ["discarded", "unparsable"],
}


class InputError(Exception):
    pass


def read_metrics(path):
    """{series: ([steps], [values])} from a metrics JSONL."""
    if not os.path.isfile(path):
        raise InputError(f"metrics file not found: {path}")
    series = {k: ([], []) for k in ALIASES}
    series["heldout_accuracy"] = ([], [])
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}:{lineno}: not JSON ({e})")
            if not isinstance(r, dict) or "step" not in r:
                continue
            if "event" in r:  # eval events: held-out accuracy; other events are not curves
                if str(r["event"]).startswith("eval") and isinstance(r.get("accuracy"), (int, float)):
                    series["heldout_accuracy"][0].append(r["step"])
                    series["heldout_accuracy"][1].append(float(r["accuracy"]))
                continue
            for name, keys in ALIASES.items():
                v = next((r[k] for k in keys if k in r), None)
                if v is None and name == "clip_frac" and "clip_frac_low" in r and "clip_frac_high" in r:
                    v = r["clip_frac_low"] + r["clip_frac_high"]
                if isinstance(v, (int, float)):
                    series[name][0].append(r["step"])
                    series[name][1].append(float(v))
    return series


def read_dumps(directory):
    import h5py
    import numpy as np

    if not os.path.isdir(directory):
        raise InputError(f"trajectory dump directory not found: {directory}")
    files = sorted(glob.glob(os.path.join(directory, "traj_*.h5")))
    if not files:
        raise InputError(f"no traj_*.h5 files in {directory}")
    series = {k: ([], []) for k in ALIASES}
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                if int(f.attrs.get("complete", 0)) != 1:
                    print(f"plot_rl.py: skipping incomplete dump {path}", file=sys.stderr)
                    continue
                step = int(f.attrs["step"])
                n = int(f.attrs["num_samples"])
                disc = f["discarded"][:].astype(bool)
                vals = {
                    "reward": float(np.mean(f["reward"][:][~disc])) if (~disc).any() else math.nan,
                    "accuracy": float(np.mean(f["verdict"][:] == 0)) if n else math.nan,
                    "response_length": float(np.mean(f["response_length"][:])) if n else math.nan,
                    "kept": float(n - disc.sum()),
                    "discarded": float(disc.sum()),
                }
                if "metrics/clip_frac" in f:
                    vals["clip_frac"] = float(f["metrics/clip_frac"][()])
        except (OSError, KeyError) as e:
            raise InputError(f"{path}: not a readable trajectory dump ({e})")
        for k, v in vals.items():
            series[k][0].append(step)
            series[k][1].append(v)
    return series


PLOTS = [  # file name, title, series
    ("reward.png", "reward (mean over kept samples)", ["reward"]),
    ("accuracy.png", "accuracy (training samples; held-out greedy)", ["accuracy", "heldout_accuracy"]),
    ("response_length.png", "response length (tokens)", ["response_length"]),
    ("clip_frac.png", "clip fraction", ["clip_frac"]),
    ("kept_discarded.png", "samples kept / discarded", ["kept", "discarded"]),
]


class WriteError(Exception):
    """An output file could not be written (exit status 2)."""


def plot(sources, out_dir):
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot create {out_dir}: {e.strerror or e}")
    written = []
    for fname, title, names in PLOTS:
        lines = [(src, name, s[name]) for src, s in sources for name in names if name in s and s[name][0]]
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for src, name, (x, y) in lines:
            ax.plot(x, y, marker="." if len(x) < 50 else None, label=f"{name} ({src})")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, fname)
        try:
            fig.savefig(path, dpi=100)
        except OSError as e:  # disk full, no permission: an error naming the file, not a traceback
            raise WriteError(f"cannot write {path}: {e.strerror or e}")
        finally:
            plt.close(fig)
        written.append(path)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", help="metrics JSONL of the RL run")
    ap.add_argument("--dumps", help="directory of traj_*.h5 trajectory dumps")
    ap.add_argument("--out", default="plots", help="output directory for the PNGs (default plots/)")
    a = ap.parse_args(argv)
    if not a.metrics and not a.dumps:
        print("plot_rl.py: error: give --metrics FILE and/or --dumps DIR", file=sys.stderr)
        return 2
    try:
        sources = []
        if a.metrics:
            sources.append(("metrics", read_metrics(a.metrics)))
        if a.dumps:
            sources.append(("dumps", read_dumps(a.dumps)))
        written = plot(sources, a.out)
    except InputError as e:
        print(f"plot_rl.py: error: {e}", file=sys.stderr)
        return 1
    except WriteError as e:
        print(f"plot_rl.py: error: {e}", file=sys.stderr)
        return 2
    if not written:
        print("plot_rl.py: error: nothing to plot (no known keys with a step)", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
