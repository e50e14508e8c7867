#!/usr/bin/python3
"""The Motif architecture (grouped differential attention + PolyNorm) against the
independent PyTorch reference validation/motif/torch_reference.py: bench_motif dumps
a small model's weights, batch, log-probs, logits and gradients from the f64 CPU
backend, the reference recomputes them from the equations and must agree to 1e-9.
Skipped (exit 0, with a message) where PyTorch or bench_motif is not available.
Registered in ctest as python.test_motif_reference."""
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("TEMPER_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("TEMPER_BIN", "")


def main():
    try:
        import torch  # noqa: F401
    except ImportError:
        print("test_motif_reference skipped: PyTorch is not installed (python3-torch)")
        return 0
    bench = os.path.join(os.path.dirname(BIN), "bench_motif") if BIN else ""
    if not bench or not os.path.exists(bench):
        print(f"test_motif_reference skipped: bench_motif not built (looked for '{bench}')")
        return 0
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([bench, "dump", d, "cpu"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            print("bench_motif dump failed:\n" + r.stdout + r.stderr)
            return 1
        r = subprocess.run([sys.executable, os.path.join(SRC, "validation", "motif", "torch_reference.py"), d,
                            "--device", "cpu", "--dtype", "float64"], capture_output=True, text=True, timeout=300)
        print(r.stdout + r.stderr)
        if r.returncode != 0 or "PASS" not in r.stdout:
            print("FAILED: temper and the PyTorch reference disagree")
            return 1
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
