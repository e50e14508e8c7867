#!/usr/bin/python3
"""Tests of postproc/: pass@k against the closed form, score tables on a small
generated JSONL, plots written as non-empty PNGs, one-line errors on missing files.
Exits non-zero on failure (registered in ctest as python.test_postproc)."""
import csv
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("TEMPER_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
POST = os.path.join(SRC, "postproc")
sys.path.insert(0, POST)

import passk  # noqa: E402
import score_eval  # noqa: E402


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(POST, script), *args], capture_output=True, text=True,
                          env=dict(os.environ, MPLBACKEND="Agg"), timeout=120)


def closed_form(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


class PassK(unittest.TestCase):
    def test_matches_closed_form(self):
        for n in range(1, 21):
            for c in range(0, n + 1):
                for k in range(1, n + 1):
                    self.assertAlmostEqual(passk.pass_at_k(n, c, k), closed_form(n, c, k), places=12,
                                           msg=f"n={n} c={c} k={k}")

    def test_edge_cases(self):
        self.assertEqual(passk.pass_at_k(5, 0, 1), 0.0)  # c = 0
        self.assertEqual(passk.pass_at_k(5, 0, 5), 0.0)
        self.assertEqual(passk.pass_at_k(5, 5, 1), 1.0)  # c = n
        self.assertEqual(passk.pass_at_k(5, 1, 5), 1.0)  # n = k: any correct sample passes
        self.assertEqual(passk.pass_at_k(4, 3, 2), 1.0)  # n - c < k
        self.assertAlmostEqual(passk.pass_at_k(10, 3, 1), 0.3, places=15)
        self.assertAlmostEqual(passk.pass_at_k(4, 1, 2), 0.5, places=15)  # 1 - C(3,2)/C(4,2)

    def test_large_n_is_stable(self):
        v = passk.pass_at_k(1000, 3, 100)
        self.assertAlmostEqual(v, closed_form(1000, 3, 100), places=10)
        self.assertTrue(0 < v < 1)

    def test_invalid_inputs(self):
        for args in [(3, 1, 4), (3, 4, 1), (0, 0, 1), (3, 1, 0)]:
            with self.assertRaises(ValueError):
                passk.pass_at_k(*args)

    def test_means(self):
        self.assertAlmostEqual(passk.avg_at_k([(4, 1), (4, 3)]), 0.5)
        self.assertAlmostEqual(passk.mean_pass_at_k([(4, 1), (4, 4)], 2), 0.75)

    def test_cli(self):
        r = run("passk.py", "4", "1", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "0.500000")
        r = run("passk.py", "3", "1", "5")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)


class ScoreEval(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        # math: p0 2/4 correct, p1 0/4 (one unparsable); code: p0 4/4 correct
        lines = []
        for s, v in enumerate(["correct", "wrong", "correct", "wrong"]):
            lines.append({"task": "math", "prompt_index": 0, "sample": s, "reward": float(v == "correct"), "verdict": v})
        for s, v in enumerate(["wrong", "unparsable", "wrong", "wrong"]):
            lines.append({"task": "math", "prompt_index": 1, "sample": s, "reward": 0.0, "verdict": v})
        for s in range(4):
            lines.append({"task": "code", "prompt_index": 0, "sample": s, "reward": 1.0, "verdict": "correct"})
        self.path = os.path.join(self.tmp.name, "eval.rank0.jsonl")
        with open(self.path, "w") as f:
            for l in lines[:6]:
                f.write(json.dumps(l) + "\n")
            f.write("\n")
        self.path2 = os.path.join(self.tmp.name, "eval.rank1.jsonl")
        with open(self.path2, "w") as f:
            for l in lines[6:]:
                f.write(json.dumps(l) + "\n")

    def tearDown(self):
        self.tmp.cleanup()

    def test_scores(self):
        table = score_eval.score(score_eval.load([self.path, self.path2], 1.0), [1, 2, 8])
        rows = {r["task"]: r for r in table}
        m = rows["math"]
        self.assertEqual(m["prompts"], 2)
        self.assertEqual(m["n"], 4)
        self.assertAlmostEqual(m["pass@1"], 0.25)
        self.assertAlmostEqual(m["pass@2"], (closed_form(4, 2, 2) + 0.0) / 2)
        self.assertTrue(math.isnan(m["pass@8"]))  # k > n: not computable
        self.assertAlmostEqual(m["avg@4"], 0.25)
        self.assertAlmostEqual(m["unparsable"], 1 / 8)
        self.assertAlmostEqual(rows["code"]["pass@2"], 1.0)
        self.assertAlmostEqual(rows["all"]["pass@1"], (0.5 + 0 + 1) / 3)
        self.assertAlmostEqual(rows["all"]["reward"], 6 / 12)

    def test_markdown_and_csv_output(self):
        r = run("score_eval.py", self.path, self.path2, "--k", "1,2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("| task | prompts | n | pass@1 | pass@2 | avg@4 | reward | unparsable |", r.stdout)
        self.assertIn("| math | 2 | 4 | 0.2500 |", r.stdout)
        out = os.path.join(self.tmp.name, "t.csv")
        r = run("score_eval.py", self.path, self.path2, "--k", "2", "--format", "csv", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([row["task"] for row in rows], ["code", "math", "all"])
        self.assertEqual(rows[1]["unparsable"], "0.1250")
        self.assertEqual(rows[0]["pass@2"], "1.0000")

    def test_errors_are_one_line(self):
        r = run("score_eval.py", os.path.join(self.tmp.name, "missing.jsonl"))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn("not found", r.stderr)
        bad = os.path.join(self.tmp.name, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"task": "math"}\n')
        r = run("score_eval.py", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.jsonl:1", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_failed_write_is_exit_2_naming_the_file(self):  # issue 17 finding 7
        good = os.path.join(self.tmp.name, "good.jsonl")
        with open(good, "w") as f:
            f.write(json.dumps({"task": "math", "prompt_index": 0, "sample": 0, "reward": 1.0,
                                "verdict": "correct"}) + "\n")
        r = run("score_eval.py", good, "--out", "/dev/full")  # every write: ENOSPC
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("cannot write /dev/full", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)


class PlotRl(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.metrics = os.path.join(self.tmp.name, "metrics.jsonl")
        with open(self.metrics, "w") as f:
            f.write(json.dumps({"event": "start"}) + "\n")  # no step: skipped
            for s in range(1, 6):
                f.write(json.dumps({"step": s, "reward": 0.1 * s, "acc": 0.1 * s, "resp_len": 100 + s,
                                    "clip_frac_low": 0.01, "clip_frac_high": 0.02, "kept_samples": 60,
                                    "unparsable": 4}) + "\n")

    def tearDown(self):
        self.tmp.cleanup()

    def check_pngs(self, out, names):
        for n in names:
            p = os.path.join(out, n)
            self.assertTrue(os.path.isfile(p), p)
            self.assertGreater(os.path.getsize(p), 1000, p)
            with open(p, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_metrics_plots(self):
        out = os.path.join(self.tmp.name, "plots")
        r = run("plot_rl.py", "--metrics", self.metrics, "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_pngs(out, ["reward.png", "accuracy.png", "response_length.png", "clip_frac.png",
                              "kept_discarded.png"])

    def test_dump_plots(self):
        import h5py
        import numpy as np
        dumps = os.path.join(self.tmp.name, "traj")
        os.makedirs(dumps)
        for step in (2, 4):  # the documented layout (docs/trajectory_format.md)
            with h5py.File(os.path.join(dumps, f"traj_{step:09d}.h5"), "w") as f:
                f.attrs["format_version"] = 1
                f.attrs["step"] = step
                f.attrs["algorithm"] = "gspo"
                f.attrs["num_samples"] = 3
                f["reward"] = np.array([1.0, 0.0, 0.0])
                f["verdict"] = np.array([0, 1, 2], dtype=np.uint8)
                f["discarded"] = np.array([0, 0, 1], dtype=np.uint8)
                f["response_length"] = np.array([3, 5, 7], dtype=np.int32)
                f["metrics/clip_frac"] = 0.05
                f.attrs["complete"] = 1
        out = os.path.join(self.tmp.name, "plots2")
        r = run("plot_rl.py", "--dumps", dumps, "--metrics", self.metrics, "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_pngs(out, ["reward.png", "accuracy.png", "response_length.png", "clip_frac.png",
                              "kept_discarded.png"])

    def test_failed_write_is_exit_2_naming_the_file(self):  # issue 17 finding 7
        out = os.path.join(self.tmp.name, "plots3")
        os.makedirs(os.path.join(out, "reward.png"))  # a folder where the PNG must go
        r = run("plot_rl.py", "--metrics", self.metrics, "--out", out)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("cannot write " + os.path.join(out, "reward.png"), r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        r = run("plot_rl.py", "--metrics", self.metrics, "--out", "/dev/full/plots")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("cannot create /dev/full/plots", r.stderr)

    def test_missing_inputs(self):
        r = run("plot_rl.py", "--metrics", os.path.join(self.tmp.name, "nope.jsonl"))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        r = run("plot_rl.py", "--dumps", os.path.join(self.tmp.name, "nodir"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("not found", r.stderr)
        r = run("plot_rl.py")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
