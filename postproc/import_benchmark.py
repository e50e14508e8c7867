#!/usr/bin/python3
"""Converts a public benchmark file to temper's eval/RL prompt JSONL.

Reads GSM8K, MATH-500, IFEval, HumanEval or MBPP in its published JSONL form (the
files described in shared/benchmarks/README.md) and writes one temper record per
problem: {"id": <the benchmark's own id>, "task": <benchmark>, "messages": [the user
turn], <verifier data>}. The benchmark is recognised from the fields of the first
record unless --benchmark names it. Needs only the Python 3 standard library.

  import_benchmark.py INPUT.jsonl --out OUT.jsonl [--benchmark NAME] [--split test]
                      [--limit N] [--instruction TEXT] [--system TEXT]

Exit status 0 done, 2 bad input (one `error:` line naming file and line).
See postproc/README.md for the records written and the prompts used.
"""
import argparse
import json
import os
import re
import sys

BENCHMARKS = ("gsm8k", "math500", "ifeval", "humaneval", "mbpp")

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = "Write the complete solution (with the imports it needs) in one ```python code block."
INSTRUCTIONS = {"gsm8k": MATH_INSTRUCTION, "math500": MATH_INSTRUCTION, "ifeval": "",
                "humaneval": CODE_INSTRUCTION, "mbpp": CODE_INSTRUCTION}

# MBPP's customary split by task_id (google-research/mbpp README).
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974),
               "all": (1, 10 ** 9)}


class InputError(Exception):
    pass


def need(rec, where, key, types):
    """rec[key], checked to be one of `types`."""
    if key not in rec:
        raise InputError(f"{where}: missing field \"{key}\"")
    v = rec[key]
    if not isinstance(v, types) or isinstance(v, bool):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise InputError(f"{where}: field \"{key}\" must be {names}, not {type(v).__name__}")
    return v


def detect(rec, where):
    if "instruction_id_list" in rec:
        return "ifeval"
    if "entry_point" in rec and "canonical_solution" in rec:
        return "humaneval"
    if "test_list" in rec:
        return "mbpp"
    if "problem" in rec and "unique_id" in rec:
        return "math500"
    if "question" in rec and "answer" in rec:
        return "gsm8k"
    raise InputError(f"{where}: cannot tell the benchmark from the fields {sorted(rec)}; pass --benchmark")


def user_turn(text, instruction):
    return text.rstrip() + ("\n\n" + instruction if instruction else "")


def gsm8k_answer(solution, where):
    m = re.search(r"####\s*(.+?)\s*$", solution)
    if not m:
        raise InputError(f"{where}: GSM8K \"answer\" has no '#### <number>' line")
    return m.group(1).replace(",", "")


def convert(bench, rec, line_index, where, instruction):
    """One temper record (without the optional system turn)."""
    if bench == "gsm8k":
        q = need(rec, where, "question", str)
        return {"id": line_index, "task": "gsm8k", "messages": [user_turn(q, instruction)],
                "answer": gsm8k_answer(need(rec, where, "answer", str), where)}
    if bench == "math500":
        ans = need(rec, where, "answer", str)
        out = {"id": need(rec, where, "unique_id", str), "task": "math500",
               "messages": [user_turn(need(rec, where, "problem", str), instruction)], "answer": ans}
        for k in ("subject", "level"):
            if k in rec:
                out[k] = rec[k]
        return out
    if bench == "ifeval":
        ids = need(rec, where, "instruction_id_list", list)
        kwargs = need(rec, where, "kwargs", list)
        if len(ids) != len(kwargs) or not ids:
            raise InputError(f"{where}: \"instruction_id_list\" and \"kwargs\" must be non-empty and of equal length")
        constraints = []
        for i, (iid, kw) in enumerate(zip(ids, kwargs)):
            if not isinstance(iid, str) or not isinstance(kw, dict):
                raise InputError(f"{where}: instruction {i} must be a string id with an object of kwargs")
            c = {"type": iid}
            c.update({k: v for k, v in kw.items() if v is not None})
            constraints.append(c)
        return {"id": need(rec, where, "key", int), "task": "ifeval",
                "messages": [user_turn(need(rec, where, "prompt", str), instruction)], "constraints": constraints}
    if bench == "humaneval":
        prompt = need(rec, where, "prompt", str)
        entry = need(rec, where, "entry_point", str)
        test = need(rec, where, "test", str)
        text = ("Complete the following Python function.\n\n```python\n" + prompt.rstrip("\n") + "\n```")
        # program = prompt + completion (a body that continues the prompt, or the whole
        # function again, which redefines it), then the benchmark's test, then check(entry).
        return {"id": need(rec, where, "task_id", str), "task": "humaneval",
                "messages": [user_turn(text, instruction)], "entry_point": entry,
                "test_code": {"prefix": prompt, "tests": [test.rstrip("\n") + f"\n\ncheck({entry})\n"]}}
    if bench == "mbpp":
        tests = need(rec, where, "test_list", list)
        if not tests or not all(isinstance(t, str) for t in tests):
            raise InputError(f"{where}: \"test_list\" must be a non-empty list of strings")
        text = ("You are an expert Python programmer, and here is your task: " + need(rec, where, "text", str).strip()
                + " Your code should pass these tests:\n\n" + "\n".join(t.strip() for t in tests))
        out = {"id": need(rec, where, "task_id", int), "task": "mbpp",
               "messages": [user_turn(text, instruction)], "test_code": {"tests": tests}}
        setup = rec.get("test_setup_code") or ""
        if not isinstance(setup, str):
            raise InputError(f"{where}: \"test_setup_code\" must be a string")
        if setup.strip():
            # Runs after the program: task 367's setup builds trees from the Node class the
            # solution defines.
            out["test_code"]["setup"] = setup
        return out
    raise InputError(f"unknown benchmark '{bench}' (known: {', '.join(BENCHMARKS)})")


def read_records(path):
    if not os.path.isfile(path):
        raise InputError(f"benchmark file not found: {path}")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise InputError(f"{where}: not JSON ({e})")
            if not isinstance(rec, dict):
                raise InputError(f"{where}: a record must be a JSON object")
            yield where, rec


def import_file(path, bench=None, split=None, limit=0, instruction=None, system=None):
    """The converted records of one benchmark file (a list of dicts)."""
    out = []
    for index, (where, rec) in enumerate(read_records(path)):
        if bench is None:
            bench = detect(rec, where)
        if bench not in BENCHMARKS:
            raise InputError(f"unknown benchmark '{bench}' (known: {', '.join(BENCHMARKS)})")
        if bench == "mbpp":
            lo, hi = MBPP_SPLITS[split or "test"]
            if not lo <= need(rec, where, "task_id", int) <= hi:
                continue
        elif split not in (None, "test", "all"):
            raise InputError(f"--split {split} applies to mbpp only")
        r = convert(bench, rec, index, where, INSTRUCTIONS[bench] if instruction is None else instruction)
        msgs = [{"role": "system", "content": system}] if system else []
        r["messages"] = msgs + [{"role": "user", "content": r["messages"][0]}]
        out.append(r)
        if limit and len(out) >= limit:
            break
    if not out:
        raise InputError(f"{path}: no records" + (f" in the {split} split" if split else ""))
    ids = [r["id"] for r in out]
    if len(set(map(json.dumps, ids))) != len(ids):
        raise InputError(f"{path}: repeated ids")
    return bench, out


def write_jsonl(path, records):
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="benchmark JSONL (e.g. shared/benchmarks/gsm8k_test.jsonl)")
    ap.add_argument("--out", required=True, help="temper prompt JSONL to write ('-' = stdout)")
    ap.add_argument("--benchmark", choices=BENCHMARKS, help="default: recognised from the fields")
    ap.add_argument("--split", choices=sorted(MBPP_SPLITS), help="MBPP split by task_id (default test: 11-510)")
    ap.add_argument("--limit", type=int, default=0, help="keep only the first N problems (0 = all)")
    ap.add_argument("--instruction", help="replaces the sentence appended to each prompt ('' = none)")
    ap.add_argument("--system", help="adds a system turn with this text")
    a = ap.parse_args(argv)
    try:
        if a.limit < 0:
            raise InputError("--limit must be >= 0")
        bench, recs = import_file(a.input, a.benchmark, a.split, a.limit, a.instruction, a.system)
        if a.out == "-":
            for r in recs:
                sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            write_jsonl(a.out, recs)
        print(f"{bench}: {len(recs)} records from {a.input} -> {a.out}", file=sys.stderr)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
