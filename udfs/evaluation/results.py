"""Figures from per-sample verdicts: pass@k per set, decoding and variant, what is
missing, and what failed. Plain Python over rows the evaluate stage collects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from udfs.evaluation.passk import mean_pass_at_k
from udfs.evaluation.problems import PLUS_SETS


def pass_at_k_rows(counts: dict[tuple[str, str], list[tuple[int, int, int | None]]],
                   ks: Sequence[int]) -> list[dict[str, Any]]:
    """pass@k per (benchmark, decoding) and variant from per-task (n, base c, plus c)."""
    rows = []
    for (benchmark, decoding), tasks in sorted(counts.items()):
        variants = ["base", "plus"] if benchmark in PLUS_SETS else ["base"]
        smallest = min(n for n, _, _ in tasks)
        for variant in variants:
            pairs = [(n, base if variant == "base" else (plus or 0)) for n, base, plus in tasks]
            for k in sorted(set(ks)):
                if k > smallest:
                    continue
                rows.append({"benchmark": benchmark, "variant": variant, "decoding": decoding, "k": k,
                             "pass_at_k": mean_pass_at_k(pairs, k), "n_tasks": len(pairs),
                             "n_samples": sum(n for n, _ in pairs)})
    return rows


def summarize(samples: Sequence[dict[str, Any]], asked: Sequence[tuple[str, str, str]],
              ks: Sequence[int], with_failures: bool) -> tuple[list[dict[str, Any]], dict[str, int],
                                                               list[dict[str, Any]]]:
    """(figures, tasks without rows per set/decoding, failing samples) of the asked tasks.

    samples: eval_samples rows (benchmark, task_id, decoding, base_passed, plus_passed, ...);
    asked: (benchmark, task_id, decoding) of the tasks this run asks about.
    """
    wanted = set(asked)
    per_task: dict[tuple[str, str, str], list[int]] = {}
    failed = []
    for row in samples:
        key = (row["benchmark"], row["task_id"], row["decoding"])
        if key not in wanted:
            continue
        n_base_plus = per_task.setdefault(key, [0, 0, 0])
        n_base_plus[0] += 1
        n_base_plus[1] += int(bool(row["base_passed"]))
        n_base_plus[2] += int(bool(row["plus_passed"]))
        if with_failures and not row["passed"]:
            failed.append({name: row[name] for name in (
                "benchmark", "task_id", "status", "base_passed", "plus_passed", "detail")})
    counts: dict[tuple[str, str], list[tuple[int, int, int | None]]] = {}
    for (benchmark, _, decoding), (n, base, plus) in per_task.items():
        counts.setdefault((benchmark, decoding), []).append((n, base, plus))
    missing: dict[str, int] = {}
    for benchmark, task_id, decoding in wanted:
        if (benchmark, task_id, decoding) not in per_task:
            name = f"{benchmark}/{decoding}"
            missing[name] = missing.get(name, 0) + 1
    failed.sort(key=lambda r: (r["benchmark"], _task_number(r["task_id"])))
    return pass_at_k_rows(counts, ks), missing, failed


def _task_number(task_id: str) -> tuple[int, str]:
    tail = task_id.rsplit("/", 1)[-1]
    return (int(tail), task_id) if tail.isdigit() else (0, task_id)
