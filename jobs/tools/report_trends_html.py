"""The report's trends page (no Spark): the last nights' yields, pass rates, throughput,
usage and cost, with regressions marked red so a bad night shows at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.core.registry import stage_order
from jobs.tools.page import (
    EXAMPLES_PAGE,
    INDEX_PAGE,
    Cell,
    Markup,
    esc,
    link,
    money,
    page,
    pct,
    table_html,
)

TREND_CHARTS = {
    "yields": "trend_yields.png",
    "pass_rate": "trend_pass_rate.png",
    "cost": "trend_cost.png",
}
DOWN = "▼"


def _nights(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return (summary.get("trends") or {}).get("nights") or []


def _stages(nights: list[dict[str, Any]]) -> list[str]:
    return sorted({s["stage"] for night in nights for s in night["stages"]}, key=stage_order)


def _yield_of(night: dict[str, Any], stage: str) -> float | None:
    return next((s["yield"] for s in night["stages"] if s["stage"] == stage), None)


def _regressed(summary: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(run id, metric, stage) -> the regression found there."""
    found = (summary.get("trends") or {}).get("regressions") or []
    return {(r["run_id"], r["metric"], r["stage"]): r for r in found}


def draw_trends(trends: dict[str, Any] | None, out: Path) -> None:
    # matplotlib is optional: report_html._draw has imported it (or said how to) already.
    from udfs import report_charts as charts

    nights = (trends or {}).get("nights") or []
    labels = [n["label"] for n in nights]
    marked = (trends or {}).get("regressions") or []
    index = {n["run_id"]: i for i, n in enumerate(nights)}
    yields = {stage: [_yield_of(n, stage) for n in nights] for stage in _stages(nights)}
    charts.yield_trend_chart(labels, yields, [(r["stage"], index[r["run_id"]]) for r in marked
                                              if r["metric"] == "yield"], out / TREND_CHARTS["yields"])
    charts.pass_rate_trend_chart(labels, [n["pass_rate"] for n in nights],
                                 [index[r["run_id"]] for r in marked if r["metric"] == "pass_rate"],
                                 out / TREND_CHARTS["pass_rate"])
    charts.cost_trend_chart(labels, [n["cost"] for n in nights], out / TREND_CHARTS["cost"])


def _img(name: str, alt: str, images: dict[str, str]) -> str:
    return f'<img src="{esc(images.get(name, TREND_CHARTS[name]))}" alt="{esc(alt)}">'


def _marked(value: float | None, regression: dict[str, Any] | None) -> Any:
    if regression is None:
        return pct(value)
    return Cell(f"{pct(value)} {DOWN}", "bad",
                f"regression: median of the nights before was {pct(regression['baseline'])}")


def _regressions_section(summary: dict[str, Any]) -> str:
    nights = {n["run_id"]: n for n in _nights(summary)}
    found = (summary.get("trends") or {}).get("regressions") or []
    share = (summary.get("trends") or {}).get("regression_share", 0.5)
    rule = (f"<p class=\"meta\">A night is marked {DOWN} when a stage's yield, or the execute pass "
            f"rate, is at most {100 * share:.0f}% of its median over the nights before it here.</p>")
    if not found:
        return f"<h2>Regressions</h2><p class=\"ok\">No regression in these nights.</p>{rule}"
    items = "".join(
        f"<li>{DOWN} regression: night {esc(nights[r['run_id']]['label'])} ({esc(r['run_id'])}): "
        f"{esc(r['stage'])} {'pass rate' if r['metric'] == 'pass_rate' else 'yield'} "
        f"{pct(r['value'])}, median of the nights before {pct(r['baseline'])}</li>"
        for r in found
    )
    return f"<h2>Regressions</h2><ul class=\"alert\">{items}</ul>{rule}"


def _nights_section(summary: dict[str, Any]) -> str:
    regressed = _regressed(summary)
    rows = [[n["label"], n["run_id"], n["status"], len(n["stages"]), n["sft_kept"],
             _marked(n["pass_rate"], regressed.get((n["run_id"], "pass_rate", "execute"))),
             n["tokens_in"], n["tokens_out"], n["gpu_hours"], money(n["cost"]), money(n["cost_per_pair"])]
            for n in _nights(summary)]
    return "<h2>Nights</h2>" + table_html(
        ["night", "run id", "status", "stages", "SFT pairs kept", "pass rate", "tokens in",
         "tokens out", "GPU-hours", "cost", "cost per pair"], rows, numeric_from=3)


def _yields_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    nights = _nights(summary)
    stages = _stages(nights)
    regressed = _regressed(summary)
    alt = "Yield per stage per night: " + ("; ".join(
        f"{n['label']} " + ", ".join(f"{s['stage']} {pct(s['yield'])}" for s in n["stages"])
        for n in nights) or "no nights yet")
    rows = [[n["label"], *(_marked(_yield_of(n, stage), regressed.get((n["run_id"], "yield", stage)))
                           for stage in stages)] for n in nights]
    table = table_html(["night", *stages], rows) if stages else ""
    note = "<p class=\"meta\">Yield: rows out per row in (extract: functions per file).</p>"
    return f"<h2>Yield per stage</h2>{_img('yields', alt, images)}{note}{table}"


def _pass_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    nights = _nights(summary)
    regressed = _regressed(summary)
    alt = "Execution pass rate per night: " + ("; ".join(
        f"{n['label']} {pct(n['pass_rate'])}" for n in nights) or "no nights yet")
    rows = [[n["label"], n["executions"], n["passed"],
             _marked(n["pass_rate"], regressed.get((n["run_id"], "pass_rate", "execute")))]
            for n in nights]
    table = table_html(["night", "executions", "passed", "pass rate"], rows) if nights else ""
    return f"<h2>Execution pass rate</h2>{_img('pass_rate', alt, images)}{table}"


def _cost_section(summary: dict[str, Any], images: dict[str, str]) -> str:
    nights = _nights(summary)
    alt = "Cost per night: " + ("; ".join(f"{n['label']} {money(n['cost'])}" for n in nights)
                                or "no nights yet")
    note = ("<p class=\"meta\">An estimate from the cost.* prices (blank: no price set); cost per "
            "pair is the night's cost over the pairs its select stage kept.</p>")
    return f"<h2>Cost</h2>{_img('cost', alt, images)}{note}"


def _stage_rows(night: dict[str, Any]) -> list[list[Any]]:
    return [[s["stage"], s["status"], s["rows_in"], s["rows_out"], s["rows_rejected"], s["rows_failed"],
             pct(s["yield"]), s["seconds"], s["rows_per_s"], s["tokens_in"], s["tokens_out"],
             s["tokens_out_per_s"], s["gpu_seconds"], money(s["cost"])] for s in night["stages"]]


def _throughput_section(summary: dict[str, Any]) -> str:
    nights = _nights(summary)
    headers = ["stage", "status", "in", "out", "rejected", "failed", "yield", "seconds", "rows in/s",
               "tokens in", "tokens out", "tokens out/s", "GPU-seconds", "cost"]
    # Newest first and open; the older nights folded, there to compare with.
    blocks = "".join(
        f"<details{' open' if i == 0 else ''}><summary>{esc(n['label'])} &middot; {esc(n['run_id'])} "
        f"&middot; {esc(n['status'])}</summary>{table_html(headers, _stage_rows(n), numeric_from=2)}</details>"
        for i, n in enumerate(reversed(nights))
    )
    return f"<h2>Rows, throughput and usage per stage</h2>{blocks or '<p>No stage runs yet.</p>'}"


def _reject_mix_section(summary: dict[str, Any]) -> str:
    nights = _nights(summary)
    kinds = sorted({(stage, reason) for n in nights for stage, reasons in n["rejects"].items()
                    for reason in reasons}, key=lambda k: (stage_order(k[0]), k[1]))
    if not kinds:
        return "<h2>Reject mix</h2><p>No rejects in these nights.</p>"
    rows = [[f"{stage}: {reason}", *(n["rejects"].get(stage, {}).get(reason) for n in nights)]
            for stage, reason in kinds]
    return "<h2>Reject mix</h2>" + table_html(["stage: reason", *(n["label"] for n in nights)], rows)


def render_trends_html(summary: dict[str, Any], images: dict[str, str] | None = None) -> str:
    shown = images or {}
    count = len(_nights(summary))
    meta = Markup(
        f"lake {esc(summary['lake'])} &middot; {count} of the last "
        f"{esc((summary.get('trends') or {}).get('nights_requested', count))} nights, up to run "
        f"{esc(summary['run_id'])} &middot; {link(INDEX_PAGE, 'back to the report')} &middot; "
        f"{link(EXAMPLES_PAGE, 'examples')} &middot; numbers in {link('summary.json', 'summary.json')}"
    )
    sections = [
        _regressions_section(summary), _nights_section(summary), _yields_section(summary, shown),
        _pass_section(summary, shown), _cost_section(summary, shown), _throughput_section(summary),
        _reject_mix_section(summary),
    ]
    return page(f"selfalign trends {summary['run_id']}", f"selfalign trends: the last {count} nights",
                meta, sections, wide=True)
