"""Rendering `selfalign report`'s summary (no Spark): PNG charts, summary.json and
self-contained pages (the charts embedded as data URIs): index.html for the run,
trends.html for the nights up to it, examples.html for pairs and rejects."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from jobs.core.failures import StageError
from jobs.tools.page import (
    EXAMPLES_PAGE,
    INDEX_PAGE,
    TRENDS_PAGE,
    Markup,
    esc,
    link,
    page,
    table_html,
)
from jobs.tools.report_examples_html import render_examples_html
from jobs.tools.report_trends_html import TREND_CHARTS, draw_trends, render_trends_html

LATEST = "latest"
CHARTS = {
    "funnel": "funnel.png",
    "rejects": "rejects.png",
    "pass_rates": "pass_rates.png",
    "cluster_sizes": "cluster_sizes.png",
    "top_concepts": "top_concepts.png",
}

def safe_dir_name(run_id: str) -> str:
    """A run id as one path component: nothing that could climb out of the report dir."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", run_id).strip(".")
    return cleaned or LATEST


def _draw(summary: dict[str, Any], out: Path) -> None:
    try:
        from udfs import report_charts as charts
    except ImportError as exc:
        raise StageError(
            f"report: matplotlib is needed for the charts ({exc}); pip install 'selfalign[report]'"
        ) from None
    charts.funnel_chart(summary["funnel"], out / CHARTS["funnel"])
    charts.rejects_chart(summary["rejects"], out / CHARTS["rejects"])
    charts.pass_rate_chart(summary["pass_rates"], out / CHARTS["pass_rates"])
    charts.cluster_size_chart(summary["cluster_sizes"], out / CHARTS["cluster_sizes"])
    charts.top_concepts_chart(summary["top_concepts"], out / CHARTS["top_concepts"])
    draw_trends(summary.get("trends"), out)


def _img(name: str, alt: str, images: dict[str, str]) -> str:
    return f'<img src="{esc(images.get(name, CHARTS[name]))}" alt="{esc(alt)}">'


def _funnel_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    steps = summary["funnel"]
    alt = "Funnel chart: " + "; ".join(
        f"{s['label']} {s['count']:,}" if s["ran"] else f"{s['label']} not run" for s in steps
    )
    rows = []
    previous: int | None = None
    for s in steps:
        share = f"{100 * s['count'] / previous:.1f}%" if s["ran"] and previous else "-"
        rows.append([s["label"], s["stage"], s["table"], s["count"] if s["ran"] else "not run", share])
        previous = s["count"] if s["ran"] else None
    table = table_html(["step", "stage", "table", "rows", "of previous step"], rows, numeric_from=3)
    return f"<h2>Funnel</h2>{_img('funnel', alt, images)}{table}"


def _run_section(summary: dict[str, Any]) -> str:
    stages = summary["run"]
    if not stages:
        return f"<h2>Run {esc(summary['run_id'])}</h2><p>No stage runs recorded under this id.</p>"
    rows = [[s["stage"], s["status"], s["started_at"], s["seconds"], s["rows_in"], s["rows_out"],
             s["rows_rejected"]] for s in stages]
    table = table_html(["stage", "status", "started (UTC)", "seconds", "in", "out", "rejected"],
                        rows, numeric_from=3)
    return f"<h2>Run {esc(summary['run_id'])}</h2>{table}"


def _rejects_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    rejects = summary["rejects"]
    rows = [[stage, reason, n] for stage, reasons in rejects.items() for reason, n in reasons.items()]
    alt = "Reject reasons chart: " + ("; ".join(f"{s} {r} {n:,}" for s, r, n in rows) or "no rejects yet")
    table = table_html(["stage", "reason", "rows"], rows, numeric_from=2) if rows else "<p>No rejects yet.</p>"
    return f"<h2>Reject reasons</h2>{_img('rejects', alt, images)}{table}"


def _pass_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    rates = summary["pass_rates"]
    if not rates or not rates["executions"]:
        return ("<h2>Execution pass rates</h2>"
                f"{_img('pass_rates', 'Pass rate chart: no executions yet', images)}<p>No executions yet.</p>")
    by_difficulty = rates["by_difficulty"]
    histogram = rates["by_instruction"]["histogram"]
    alt = (f"Pass rate chart: {rates['passed']:,} of {rates['executions']:,} responses pass; "
           + "; ".join(f"{d['difficulty']} {100 * d['rate']:.1f}%" for d in by_difficulty))
    overall = (f"<p>{rates['passed']:,} of {rates['executions']:,} executed responses pass "
               f"({100 * rates['rate']:.1f}%); {rates['by_instruction']['with_a_pass']:,} of "
               f"{rates['by_instruction']['instructions']:,} instructions have at least one.</p>")
    difficulty = table_html(
        ["difficulty", "executions", "passed", "pass rate"],
        [[d["difficulty"], d["executions"], d["passed"], f"{100 * d['rate']:.1f}%"] for d in by_difficulty],
    )
    spread = table_html(["share of responses passing", "instructions"],
                         [[b["bin"], b["instructions"]] for b in histogram])
    return f"<h2>Execution pass rates</h2>{_img('pass_rates', alt, images)}{overall}{difficulty}{spread}"


def _clusters_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    sizes = summary["cluster_sizes"]
    alt = "Cluster size histogram: " + (
        "; ".join(f"size {s['size']}: {s['clusters']:,} clusters" for s in sizes) or "no clusters yet"
    )
    table = (table_html(["functions in cluster", "clusters"], [[s["size"], s["clusters"]] for s in sizes])
             if sizes else "<p>No clusters yet.</p>")
    return f"<h2>Near-duplicate cluster sizes</h2>{_img('cluster_sizes', alt, images)}{table}"


def _concepts_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    top = summary["top_concepts"]
    alt = "Top concepts chart: " + ("; ".join(f"{c['concept']} {c['seeds']:,}" for c in top)
                                     or "no concepts yet")
    table = (table_html(["concept", "seeds"], [[c["concept"], c["seeds"]] for c in top])
             if top else "<p>No concepts yet.</p>")
    return f"<h2>Top concepts</h2>{_img('top_concepts', alt, images)}{table}"


def render_html(summary: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """The page; `images` maps a chart to its src (a data URI), else the PNG file's name."""
    shown = images or {}
    sections = [
        _funnel_section(summary, shown), _run_section(summary), _rejects_section(summary, shown),
        _pass_section(summary, shown), _clusters_section(summary, shown), _concepts_section(summary, shown),
    ]
    meta = Markup(
        f"lake {esc(summary['lake'])} &middot; generated {esc(summary['generated_at'])} &middot; "
        f"{link(TRENDS_PAGE, 'trends over the last nights')} &middot; "
        f"{link(EXAMPLES_PAGE, 'examples with their lineage')} &middot; numbers also in "
        f"{link('summary.json', 'summary.json')}"
    )
    return page(f"selfalign report {summary['run_id']}", f"selfalign report: run {summary['run_id']}",
                meta, sections)


def _embedded(target: Path, charts: dict[str, str]) -> dict[str, str]:
    # The charts go into the pages as data URIs: one file to mail, attach or open from
    # object storage, with nothing to resolve. The PNGs stay beside it for reuse.
    return {name: "data:image/png;base64," + base64.b64encode((target / file).read_bytes()).decode("ascii")
            for name, file in charts.items()}


def render_report(summary: dict[str, Any], out: str | Path) -> Path:
    """Write charts, summary.json, index.html, trends.html and examples.html under
    `out`/<run id>; returns index.html."""
    target = Path(out) / safe_dir_name(summary["run_id"])
    target.mkdir(parents=True, exist_ok=True)
    _draw(summary, target)
    (target / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    index = target / INDEX_PAGE
    index.write_text(render_html(summary, _embedded(target, CHARTS)), encoding="utf-8")
    (target / TRENDS_PAGE).write_text(render_trends_html(summary, _embedded(target, TREND_CHARTS)),
                                      encoding="utf-8")
    (target / EXAMPLES_PAGE).write_text(render_examples_html(summary), encoding="utf-8")
    return index
