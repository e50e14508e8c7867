#!/usr/bin/python3
"""Tests of postproc/repro_report.py on generated run directories (the layout
validation/repro/run_device.sh writes): the per-cell means and standard deviations over seeds,
the zero-variance fraction, the Welch comparison, the eval-speed row, PNGs written, one-line
errors. Exits non-zero on failure (ctest python.test_repro_report)."""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("TEMPER_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(SRC, "postproc", "repro_report.py")
sys.path.insert(0, os.path.join(SRC, "postproc"))

import repro_report  # noqa: E402


def write_run(root, cell, seed, before, final, rewards, dropped, groups=16):
    d = os.path.join(root, "repro", cell, f"seed{seed}")
    os.makedirs(d)
    with open(os.path.join(d, "metrics.rank0.jsonl"), "w") as f:
        f.write(json.dumps({"event": "eval_before", "time": 0.1, "step": 0, "accuracy": before}) + "\n")
        for i, (r, z) in enumerate(zip(rewards, dropped), 1):
            f.write(json.dumps({"step": i, "time": i, "tokens": 100, "reward": r, "groups": groups,
                                "groups_dropped": z, "kept_samples": 128, "clip_frac": 0.01}) + "\n")
        f.write(json.dumps({"event": "eval_final", "time": 9, "step": len(rewards), "accuracy": final}) + "\n")
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump({"cell": cell, "seed": seed, "exit": 0, "wall_ms": 7500}, f)


class Report(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        # grpo: finals 0.30, 0.40; gspo: 0.50, 0.60; no filter: half the groups have zero variance
        for seed, fin in [(1, 0.30), (2, 0.40)]:
            write_run(self.root, "grpo", seed, 0.2, fin, [0.1 * i for i in range(12)], [0] * 12)
        for seed, fin in [(1, 0.50), (2, 0.60)]:
            write_run(self.root, "gspo", seed, 0.2, fin, [0.2] * 12, [4] * 12)
        write_run(self.root, "grpo_no_filter", 1, 0.2, 0.25, [0.3] * 12, [8] * 12)
        os.makedirs(os.path.join(self.root, "eval"))
        with open(os.path.join(self.root, "eval", "eval_summary.json"), "w") as f:
            json.dump({"tasks": {"gsm8k": {"prompts": 1319}}, "samples_per_prompt": 4,
                       "generated_tokens": 2000000, "seconds": 100.0}, f)
        with open(os.path.join(self.root, "eval", "exit.txt"), "w") as f:
            f.write("exit 0 wall_ms 123400\n")
        with open(os.path.join(self.root, "device.txt"), "w") as f:
            f.write("gpu: NVIDIA H200, 143771 MiB\n")

    def tearDown(self):
        self.tmp.cleanup()

    def test_numbers(self):
        cells = repro_report.load(self.root)
        s = repro_report.summarize(cells)
        m, sd, n = s["grpo"]["heldout_final"]
        self.assertAlmostEqual(m, 0.35)
        self.assertAlmostEqual(sd, math.sqrt(0.005))  # sample std of 0.30, 0.40
        self.assertEqual(n, 2)
        self.assertAlmostEqual(s["grpo"]["heldout_change"][0], 0.15)
        self.assertAlmostEqual(s["grpo"]["reward_last10"][0], 0.1 * sum(range(2, 12)) / 10)
        self.assertAlmostEqual(s["gspo"]["zero_variance_frac"][0], 0.25)
        self.assertAlmostEqual(s["grpo_no_filter"]["zero_variance_frac"][0], 0.5)
        self.assertTrue(math.isnan(s["grpo_no_filter"]["heldout_final"][1]))  # one seed: no std
        self.assertAlmostEqual(s["grpo"]["wall_s"][0], 7.5)
        comps = {c["question"]: c for c in repro_report.comparisons(s, cells)}
        c = comps["GSPO vs GRPO (clip [0.8, 1.28])"]
        self.assertAlmostEqual(c["diff"], 0.2)
        self.assertAlmostEqual(c["se"], math.sqrt(0.005 / 2 + 0.005 / 2))
        self.assertNotIn("S = 4 vs S = 1", comps)  # cells absent
        sp = repro_report.eval_speed(self.root)
        self.assertEqual(sp["tokens_per_s"], 20000.0)
        self.assertEqual(sp["process_wall_s"], 123.4)

    def test_cli_writes_table_and_plots(self):
        out = os.path.join(self.root, "report")
        r = subprocess.run([sys.executable, TOOL, self.root, "--out", out], capture_output=True, text=True,
                           env=dict(os.environ, MPLBACKEND="Agg"), timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "results.md")) as f:
            md = f.read()
        self.assertIn("| `grpo`: GRPO, clip [0.8, 1.28], filter on, S = 2 (baseline) | 2 | 12 | 20.0 ± 0.0 | "
                      "35.0 ± 7.1 | 15.0 ± 7.1 |", md)
        self.assertIn("| 1319 | 4 | 2000000 | 100.0 | 20000 | 123.4 |", md)
        self.assertIn("NVIDIA H200", md)
        for png in ("reward_curves.png", "zero_variance.png", "heldout.png"):
            self.assertGreater(os.path.getsize(os.path.join(out, png)), 1000, png)
        with open(os.path.join(out, "results.json")) as f:
            j = json.load(f)
        self.assertEqual(j["cells"]["gspo"]["seeds"], [1, 2])

    def test_reads_the_archive(self):
        # the eval call's archive and the repro call's, merged
        a, b = os.path.join(self.root, "a.tar.gz"), os.path.join(self.root, "b.tar.gz")
        subprocess.run(["tar", "czf", a, "-C", self.root, "eval", "device.txt"], check=True)
        subprocess.run(["tar", "czf", b, "-C", self.root, "repro", "device.txt"], check=True)
        out = os.path.join(self.root, "fromtar")
        r = subprocess.run([sys.executable, TOOL, a, b, "--out", out, "--no-plots"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "results.json")) as f:
            j = json.load(f)
        self.assertEqual(j["cells"]["grpo"]["seeds"], [1, 2])
        self.assertEqual(j["eval_speed"]["tokens_per_s"], 20000.0)

    def test_errors(self):
        r = subprocess.run([sys.executable, TOOL, os.path.join(self.root, "nothing")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("error: ") and "nothing: not found" in r.stderr, r.stderr)
        r = subprocess.run([sys.executable, TOOL, os.path.join(self.root, "eval")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no repro results", r.stderr)
        with open(os.path.join(self.root, "repro", "grpo", "seed1", "metrics.rank0.jsonl"), "a") as f:
            f.write("{oops\n")
        r = subprocess.run([sys.executable, TOOL, self.root, "--no-plots", "--out", os.path.join(self.root, "o")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("seed1/metrics.rank0.jsonl:15: not JSON", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
