#!/usr/bin/python3
"""Per-task score tables from eval-results JSONL files.

Each line: {"task": str, "prompt_index": int, "sample": int, "reward": float,
            "verdict": "correct" | "wrong" | "unparsable"}
Several files (e.g. one per rank) are merged; a repeated (task, prompt_index, sample)
keeps its last line. A sample is correct when verdict == "correct" (lines without a
verdict: reward >= --threshold).

Per task (and "all", pooling every prompt) it prints: prompts, samples per prompt (n),
pass@1, pass@k for each requested k <= n (unbiased, Chen et al. 2021), avg@n (mean
accuracy over the n samples), mean reward and the unparsable rate.

  score_eval.py results.rank*.jsonl [--k 1,4,8] [--format markdown|csv] [--out FILE]
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from passk import pass_at_k  # noqa: E402


class InputError(Exception):
    pass


def load(paths, threshold):
    """{(task, prompt_index, sample): (correct, unparsable, reward)} from the files."""
    rows = {}
    for path in paths:
        if not os.path.isfile(path):
            raise InputError(f"eval results file not found: {path}")
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    task = str(r["task"])
                    key = (task, int(r["prompt_index"]), int(r.get("sample", 0)))
                    reward = float(r.get("reward", 0.0))
                    verdict = r.get("verdict")
                except (ValueError, KeyError, TypeError) as e:
                    raise InputError(f"{path}:{lineno}: not an eval-result line ({e.__class__.__name__}: {e})")
                if verdict is None:
                    correct, unparsable = reward >= threshold, False
                else:
                    if verdict not in ("correct", "wrong", "unparsable"):
                        raise InputError(f"{path}:{lineno}: unknown verdict '{verdict}'")
                    correct, unparsable = verdict == "correct", verdict == "unparsable"
                rows[key] = (correct, unparsable, reward)
    if not rows:
        raise InputError("no eval results in " + ", ".join(paths))
    return rows


def score(rows, ks):
    """List of per-task dicts (sorted by task, then 'all')."""
    per_prompt = {}  # (task, prompt) -> [n, c, unparsable, reward sum]
    for (task, prompt, _), (correct, unparsable, reward) in rows.items():
        p = per_prompt.setdefault((task, prompt), [0, 0, 0, 0.0])
        p[0] += 1
        p[1] += int(correct)
        p[2] += int(unparsable)
        p[3] += reward
    tasks = sorted({t for t, _ in per_prompt})
    groups = [(t, [v for (tt, _), v in per_prompt.items() if tt == t]) for t in tasks]
    if len(tasks) > 1:
        groups.append(("all", list(per_prompt.values())))
    out = []
    for task, ps in groups:
        n_min = min(p[0] for p in ps)
        samples = sum(p[0] for p in ps)
        row = {
            "task": task,
            "prompts": len(ps),
            "n": n_min if n_min == max(p[0] for p in ps) else f"{n_min}-{max(p[0] for p in ps)}",
            "pass@1": sum(p[1] / p[0] for p in ps) / len(ps),
        }
        for k in ks:
            if k == 1:
                continue
            row[f"pass@{k}"] = (sum(pass_at_k(p[0], p[1], k) for p in ps) / len(ps)) if k <= n_min else math.nan
        row[f"avg@{n_min}"] = sum(p[1] / p[0] for p in ps) / len(ps)
        row["reward"] = sum(p[3] for p in ps) / samples
        row["unparsable"] = sum(p[2] for p in ps) / samples
        out.append(row)
    return out


def fmt(v):
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def render(table, form):
    cols = []
    for row in table:  # union of columns in first-seen order (avg@n may differ per task)
        for c in row:
            if c not in cols:
                cols.append(c)
    lines = []
    if form == "csv":
        lines.append(",".join(cols))
        for row in table:
            lines.append(",".join(fmt(row.get(c, math.nan)) for c in cols))
    else:
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for row in table:
            lines.append("| " + " | ".join(fmt(row.get(c, math.nan)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="eval-results JSONL file(s)")
    ap.add_argument("--k", default="1", help="comma-separated k values for pass@k (default 1)")
    ap.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    ap.add_argument("--threshold", type=float, default=1.0, help="reward counted correct when no verdict")
    ap.add_argument("--out", help="write the table here instead of stdout")
    a = ap.parse_args(argv)
    try:
        ks = sorted({int(x) for x in a.k.split(",") if x.strip()})
        if not ks or ks[0] < 1:
            raise ValueError
    except ValueError:
        print(f"score_eval.py: error: --k must be positive integers separated by commas, got '{a.k}'", file=sys.stderr)
        return 2
    try:
        text = render(score(load(a.files, a.threshold), ks), a.format)
    except InputError as e:
        print(f"score_eval.py: error: {e}", file=sys.stderr)
        return 1
    if a.out:
        try:
            with open(a.out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:  # disk full, no permission: say which file, exit 2
            print(f"score_eval.py: error: cannot write {a.out}: {e.strerror or e}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
