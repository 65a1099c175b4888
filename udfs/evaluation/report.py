"""The pass@k table: one column per set and variant, in the order EvalPlus reports them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from udfs.evaluation.problems import LABELS, PLUS_SETS, SETS, VARIANTS


def result_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(benchmark, variant) pairs present, in the order EvalPlus reports them."""
    present = {(r["benchmark"], r["variant"]) for r in rows}
    return [(b, v) for b in SETS for v in VARIANTS if (b, v) in present]


def column_label(benchmark: str, variant: str) -> str:
    label = LABELS.get(benchmark, benchmark)
    if benchmark in PLUS_SETS and variant == "base":
        return f"{label} base"
    return label


def format_results(rows: Sequence[dict[str, Any]]) -> str:
    """The pass@k table, one column per set and variant (HumanEval+ base = EvalPlus's HumanEval).

    rows: dicts with benchmark, variant, decoding, k, pass_at_k, n_tasks.
    """
    if not rows:
        return "(no results)"
    columns = result_columns(rows)
    table = {(r["decoding"], r["k"], r["benchmark"], r["variant"]): r for r in rows}
    lines_keys = sorted({(r["decoding"], r["k"]) for r in rows},
                        key=lambda dk: (["reference", "greedy", "sampled"].index(dk[0])
                                        if dk[0] in ("reference", "greedy", "sampled") else 9, dk[1]))
    headers = ["", *[column_label(b, v) for b, v in columns]]
    body = []
    for decoding, k in lines_keys:
        cells = [f"{decoding} pass@{k}"]
        for b, v in columns:
            row = table.get((decoding, k, b, v))
            cells.append("-" if row is None else f"{100 * row['pass_at_k']:.1f}")
        body.append(cells)
    tasks = ["tasks"]
    for b, v in columns:
        counts = {r["n_tasks"] for r in rows if r["benchmark"] == b and r["variant"] == v}
        tasks.append("/".join(str(c) for c in sorted(counts)))
    body.append(tasks)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    render = [
        "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line))
        for line in [headers, *body]
    ]
    return "\n".join(render)
