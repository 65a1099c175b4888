"""Rendering `selfalign report`'s summary (no Spark): PNG charts, summary.json and a
self-contained index.html (the charts embedded as data URIs)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from jobs.core.failures import StageError

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


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else _esc(value)


def _table_html(headers: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{_num(c)}</td>' if i >= numeric_from else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(name: str, alt: str, images: dict[str, str]) -> str:
    return f'<img src="{_esc(images.get(name, CHARTS[name]))}" alt="{_esc(alt)}">'


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
    table = _table_html(["step", "stage", "table", "rows", "of previous step"], rows, numeric_from=3)
    return f"<h2>Funnel</h2>{_img('funnel', alt, images)}{table}"


def _run_section(summary: dict[str, Any]) -> str:
    stages = summary["run"]
    if not stages:
        return f"<h2>Run {_esc(summary['run_id'])}</h2><p>No stage runs recorded under this id.</p>"
    rows = [[s["stage"], s["status"], s["started_at"], s["seconds"], s["rows_in"], s["rows_out"],
             s["rows_rejected"]] for s in stages]
    table = _table_html(["stage", "status", "started (UTC)", "seconds", "in", "out", "rejected"],
                        rows, numeric_from=3)
    return f"<h2>Run {_esc(summary['run_id'])}</h2>{table}"


def _rejects_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    rejects = summary["rejects"]
    rows = [[stage, reason, n] for stage, reasons in rejects.items() for reason, n in reasons.items()]
    alt = "Reject reasons chart: " + ("; ".join(f"{s} {r} {n:,}" for s, r, n in rows) or "no rejects yet")
    table = _table_html(["stage", "reason", "rows"], rows, numeric_from=2) if rows else "<p>No rejects yet.</p>"
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
    difficulty = _table_html(
        ["difficulty", "executions", "passed", "pass rate"],
        [[d["difficulty"], d["executions"], d["passed"], f"{100 * d['rate']:.1f}%"] for d in by_difficulty],
    )
    spread = _table_html(["share of responses passing", "instructions"],
                         [[b["bin"], b["instructions"]] for b in histogram])
    return f"<h2>Execution pass rates</h2>{_img('pass_rates', alt, images)}{overall}{difficulty}{spread}"


def _clusters_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    sizes = summary["cluster_sizes"]
    alt = "Cluster size histogram: " + (
        "; ".join(f"size {s['size']}: {s['clusters']:,} clusters" for s in sizes) or "no clusters yet"
    )
    table = (_table_html(["functions in cluster", "clusters"], [[s["size"], s["clusters"]] for s in sizes])
             if sizes else "<p>No clusters yet.</p>")
    return f"<h2>Near-duplicate cluster sizes</h2>{_img('cluster_sizes', alt, images)}{table}"


def _concepts_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    top = summary["top_concepts"]
    alt = "Top concepts chart: " + ("; ".join(f"{c['concept']} {c['seeds']:,}" for c in top)
                                     or "no concepts yet")
    table = (_table_html(["concept", "seeds"], [[c["concept"], c["seeds"]] for c in top])
             if top else "<p>No concepts yet.</p>")
    return f"<h2>Top concepts</h2>{_img('top_concepts', alt, images)}{table}"


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}
.meta{color:#666;font-size:.9rem}
"""


def render_html(summary: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """The page; `images` maps a chart to its src (a data URI), else the PNG file's name."""
    shown = images or {}
    sections = [
        _funnel_section(summary, shown), _run_section(summary), _rejects_section(summary, shown),
        _pass_section(summary, shown), _clusters_section(summary, shown), _concepts_section(summary, shown),
    ]
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>selfalign report {_esc(summary['run_id'])}</title><style>{STYLE}</style></head>"
        f"<body><h1>selfalign report: run {_esc(summary['run_id'])}</h1>"
        f"<p class=\"meta\">lake {_esc(summary['lake'])} &middot; generated "
        f"{_esc(summary['generated_at'])} &middot; numbers also in "
        f"<a href=\"summary.json\">summary.json</a></p>"
        + "".join(sections) + "</body></html>\n"
    )


def render_report(summary: dict[str, Any], out: str | Path) -> Path:
    """Write charts, summary.json and index.html under `out`/<run id>; returns index.html."""
    target = Path(out) / safe_dir_name(summary["run_id"])
    target.mkdir(parents=True, exist_ok=True)
    _draw(summary, target)
    (target / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    # The charts go into the page as data URIs: one file to mail, attach or open from
    # object storage, with nothing to resolve. The PNGs stay beside it for reuse.
    images = {name: "data:image/png;base64," + base64.b64encode((target / file).read_bytes()).decode("ascii")
              for name, file in CHARTS.items()}
    index = target / "index.html"
    index.write_text(render_html(summary, images), encoding="utf-8")
    return index


