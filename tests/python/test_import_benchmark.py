#!/usr/bin/python3
"""Tests of postproc/import_benchmark.py on the records in tests/fixtures/benchmarks (and, when
$TEMPER_BENCHMARKS_DIR or ../shared/benchmarks beside the checkout holds them, the record counts of the
full files): benchmark detection, ids kept, prompts, verifier data, MBPP splits, options, and one-line
errors with exit 2. Exits non-zero on failure (ctest python.test_import_benchmark)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("TEMPER_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(SRC, "postproc", "import_benchmark.py")
FIX = os.path.join(SRC, "tests", "fixtures", "benchmarks")
SHARED = os.environ.get("TEMPER_BENCHMARKS_DIR") or os.path.join(os.path.dirname(SRC), "shared", "benchmarks")
sys.path.insert(0, os.path.join(SRC, "postproc"))

import import_benchmark  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=120)


def convert(name, *args):
    r = run(os.path.join(FIX, name), "--out", "-", *args)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    return [json.loads(line) for line in r.stdout.splitlines()]


def user(rec):
    return rec["messages"][-1]["content"]


class Importer(unittest.TestCase):
    def test_gsm8k(self):
        recs = convert("gsm8k_test.jsonl")
        self.assertEqual([r["id"] for r in recs], [0, 1, 2])
        self.assertEqual(recs[0]["task"], "gsm8k")
        self.assertEqual(recs[0]["answer"], "18")
        self.assertTrue(user(recs[0]).startswith("Janet"))
        self.assertTrue(user(recs[0]).endswith("put your final answer within \\boxed{}."))
        self.assertEqual(recs[0]["messages"][0]["role"], "user")
        self.assertEqual(import_benchmark.gsm8k_answer("x\n#### 1,234", "w"), "1234")

    def test_math500(self):
        recs = convert("math500_test.jsonl")
        self.assertEqual(recs[0]["id"], "test/precalculus/807.json")
        self.assertEqual(recs[0]["answer"], "\\left( 3, \\frac{\\pi}{2} \\right)")
        self.assertEqual((recs[0]["subject"], recs[0]["level"]), ("Precalculus", 2))
        self.assertIn("\\boxed{}", user(recs[0]))

    def test_ifeval(self):
        recs = convert("ifeval_input_data.jsonl")
        self.assertEqual(recs[0]["id"], 1000)
        self.assertEqual(recs[0]["task"], "ifeval")
        self.assertTrue(user(recs[0]).startswith("Write a 300+ word summary"))
        self.assertNotIn("boxed", user(recs[0]))  # the prompt as is
        self.assertEqual(recs[0]["constraints"][2],
                         {"type": "length_constraints:number_words", "relation": "at least", "num_words": 300})
        self.assertEqual(recs[0]["constraints"][0], {"type": "punctuation:no_comma"})

    def test_humaneval(self):
        with open(os.path.join(FIX, "humaneval.jsonl")) as f:
            raw = [json.loads(line) for line in f]
        recs = convert("humaneval.jsonl")
        self.assertEqual([r["id"] for r in recs], [r["task_id"] for r in raw])
        r, x = recs[0], raw[0]
        self.assertEqual(r["task"], "humaneval")
        self.assertEqual(r["test_code"]["prefix"], x["prompt"])
        self.assertEqual(r["test_code"]["tests"], [x["test"].rstrip("\n") + "\n\ncheck(has_close_elements)\n"])
        self.assertIn("```python\n" + x["prompt"].rstrip("\n") + "\n```", user(r))
        self.assertNotIn(x["canonical_solution"], json.dumps(r))  # the solution is not given away

    def test_mbpp_splits(self):
        recs = convert("mbpp.jsonl")
        self.assertEqual([r["id"] for r in recs], [11, 17, 367])
        self.assertEqual([r["id"] for r in convert("mbpp.jsonl", "--split", "all")], [2, 11, 17, 367, 600])
        self.assertEqual([r["id"] for r in convert("mbpp.jsonl", "--split", "validation")], [600])
        r = recs[0]
        self.assertEqual(r["task"], "mbpp")
        self.assertEqual(len(r["test_code"]["tests"]), 3)
        self.assertNotIn("setup", r["test_code"])
        self.assertIn("Node(1)", recs[2]["test_code"]["setup"])
        self.assertTrue(user(r).startswith("You are an expert Python programmer, and here is your task: Write a"))
        self.assertIn('\n\nassert remove_Occ("hello","l") == "heo"\n', user(r))

    def test_options(self):
        recs = convert("gsm8k_test.jsonl", "--limit", "2", "--system", "Be brief.", "--instruction", "")
        self.assertEqual(len(recs), 2)
        self.assertEqual(recs[0]["messages"][0], {"role": "system", "content": "Be brief."})
        self.assertFalse(user(recs[0]).endswith("}."))
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "o.jsonl")
            r = run(os.path.join(FIX, "math500_test.jsonl"), "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("math500: 3 records", r.stderr)
            with open(out) as f:
                self.assertEqual(len(f.read().splitlines()), 3)

    def test_errors(self):
        with tempfile.TemporaryDirectory() as d:
            def bad(text, *args):
                p = os.path.join(d, "in.jsonl")
                with open(p, "w") as f:
                    f.write(text)
                r = run(p, "--out", os.path.join(d, "o.jsonl"), *args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertTrue(r.stderr.startswith("error: "), r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
                self.assertFalse(os.path.exists(os.path.join(d, "o.jsonl")))
                return r.stderr
            self.assertIn("in.jsonl:2: not JSON", bad('{"question": "q", "answer": "#### 1"}\n{oops\n'))
            self.assertIn("no '#### <number>'", bad('{"question": "q", "answer": "1"}\n'))
            self.assertIn("cannot tell the benchmark", bad('{"a": 1}\n'))
            self.assertIn("field \"task_id\" must be int", bad('{"task_id": "x", "text": "t", "test_list": ["a"]}\n'))
            self.assertIn("missing field \"prompt\"", bad('{"key": 1, "instruction_id_list": ["a"], "kwargs": [{}]}\n',
                                                         "--benchmark", "ifeval"))
            self.assertIn("--split validation applies to mbpp only",
                          bad('{"question": "q", "answer": "#### 1"}\n', "--split", "validation"))
            self.assertIn("repeated ids", bad('{"key": 1, "prompt": "p", "instruction_id_list": ["a"], "kwargs": [{}]}\n' * 2))
            self.assertIn("not found", run(os.path.join(d, "missing.jsonl"), "--out", "-").stderr)


@unittest.skipUnless(os.path.isdir(SHARED), f"{SHARED} not found (set TEMPER_BENCHMARKS_DIR to check the full files)")
class FullFiles(unittest.TestCase):
    def test_counts_and_unique_ids(self):
        for name, bench, n in [("gsm8k_test.jsonl", "gsm8k", 1319), ("math500_test.jsonl", "math500", 500),
                               ("ifeval_input_data.jsonl", "ifeval", 541), ("humaneval.jsonl", "humaneval", 164),
                               ("mbpp.jsonl", "mbpp", 500)]:
            got, recs = import_benchmark.import_file(os.path.join(SHARED, name))
            self.assertEqual((got, len(recs)), (bench, n), name)
            self.assertEqual(len({json.dumps(r["id"]) for r in recs}), n, name)
            for r in recs:
                self.assertTrue(user(r).strip(), name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
