#!/usr/bin/python3
"""Unbiased pass@k (Chen et al. 2021) and avg@k.

pass@k for one problem with n samples of which c are correct is
    1 - C(n-c, k) / C(n, k)
(1 when n - c < k), computed in the stable product form
    1 - prod_{i=n-c+1}^{n} (1 - k / i)
so no huge binomials are formed. The score of a benchmark is the mean over problems.
avg@k is the mean accuracy over the samples (the expected pass@1 of one sample).

Usage as a script:  passk.py N C K   → prints pass@K for one problem.
"""
import sys


def pass_at_k(n, c, k):
    """Unbiased pass@k estimate for one problem: n samples, c correct, k <= n."""
    n, c, k = int(n), int(c), int(k)
    if n < 1 or k < 1:
        raise ValueError(f"pass@k needs n >= 1 and k >= 1 (got n={n}, k={k})")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n (got c={c}, n={n})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts, k):
    """Mean pass@k over problems; counts is an iterable of (n, c)."""
    counts = list(counts)
    if not counts:
        raise ValueError("no problems to score")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def avg_at_k(counts):
    """Mean over problems of c / n (the average accuracy of one sample)."""
    counts = list(counts)
    if not counts:
        raise ValueError("no problems to score")
    return sum(c / n for n, c in counts) / len(counts)


def main(argv):
    if len(argv) != 4:
        print("usage: passk.py N C K   (N samples, C correct, pass@K)", file=sys.stderr)
        return 2
    try:
        print(f"{pass_at_k(argv[1], argv[2], argv[3]):.6f}")
    except ValueError as e:
        print(f"passk.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
