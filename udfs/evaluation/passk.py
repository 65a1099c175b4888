"""The unbiased pass@k estimator (Chen et al. 2021) and its mean over tasks."""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass: 1 - C(n-c, k) / C(n, k).

    As the product prod_{i=n-c+1}^{n} (1 - k/i) (Chen et al. 2021), which never forms
    the huge binomials.
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task (n={n})")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """The mean pass@k over tasks given (n, c) per task."""
    if not counts:
        raise ValueError("pass@k of no tasks")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
