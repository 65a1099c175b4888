"""The report's charts: plain dicts and lists in, one PNG file out.

Pure functions of their inputs (no Spark, no lake), so they are tested alone.
Figures are built with matplotlib's object API on the Agg canvas: no pyplot,
no global backend switch, nothing shared between calls or threads. An empty
input still yields a chart that says why it is empty, so the report never has
a broken image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

BAR = "#4C72B0"
PASS = "#55A868"
MUTED = "#B0B0B0"
REGRESSION = "#C44E52"
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
           "#8C8C8C", "#CCB974", "#64B5CD")
DPI = 100


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata: the same numbers give the same bytes.
    fig.savefig(out, format="png", metadata={"Software": None})
    return out


def _placeholder(title: str, message: str, path: str | Path) -> Path:
    fig = _figure(7, 2.4)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, color="#555555",
            transform=ax.transAxes)
    return _save(fig, path)


def _height(rows: int) -> float:
    return max(2.4, 0.9 + 0.32 * rows)


def _label_bars(ax: Any, bars: Any, texts: Sequence[str]) -> None:
    for bar, text in zip(bars, texts, strict=True):
        ax.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)


def funnel_chart(steps: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Horizontal bars, first step on top: `steps` are {"label", "count", "ran"}.

    Counts span orders of magnitude (millions of files, thousands of pairs), so the
    axis is logarithmic when they do; steps that never ran are grey and say so.
    """
    if not steps:
        return _placeholder("Funnel", "nothing in the lake yet", path)
    labels = [str(s["label"]) for s in steps]
    counts = [int(s["count"]) for s in steps]
    ran = [bool(s["ran"]) for s in steps]
    fig = _figure(8, _height(len(steps)))
    ax = fig.add_subplot()
    positive = [c for c in counts if c > 0]
    log = bool(positive) and max(positive) / min(positive) >= 100
    floor = 0.8 if log else 0
    widths = [max(c, floor) if r else floor for c, r in zip(counts, ran, strict=True)]
    bars = ax.barh(range(len(steps)), widths, color=[BAR if r else MUTED for r in ran])
    _label_bars(ax, bars, [f"{c:,}" if r else "not run" for c, r in zip(counts, ran, strict=True)])
    ax.set_yticks(range(len(steps)), labels, fontsize=9)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(left=floor or 0, right=max([*positive, 1]) * (4 if log else 1.2))
    ax.set_xlabel("rows (log scale)" if log else "rows")
    ax.set_title("Funnel: source files to SFT pairs")
    fig.tight_layout()
    return _save(fig, path)


def rejects_chart(rejects: Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    """Bars per (stage, reason), grouped by stage in the order given."""
    rows = [(stage, reason, int(n)) for stage, reasons in rejects.items()
            for reason, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))]
    if not rows:
        return _placeholder("Reject reasons", "no rejects yet", path)
    fig = _figure(8, _height(len(rows)))
    ax = fig.add_subplot()
    stages = list(dict.fromkeys(stage for stage, _, _ in rows))
    colors = [PALETTE[stages.index(stage) % len(PALETTE)] for stage, _, _ in rows]
    bars = ax.barh(range(len(rows)), [n for _, _, n in rows], color=colors)
    _label_bars(ax, bars, [f"{n:,}" for _, _, n in rows])
    ax.set_yticks(range(len(rows)), [f"{stage}: {reason}" for stage, reason, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(right=max(n for _, _, n in rows) * 1.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rejected rows")
    ax.set_title("Reject reasons per stage")
    fig.tight_layout()
    return _save(fig, path)


def pass_rate_chart(pass_rates: Mapping[str, Any] | None, path: str | Path) -> Path:
    """Pass rate per difficulty and the spread of per-instruction pass rates.

    `pass_rates` is None (or has no executions) until the execute stage has run.
    """
    if not pass_rates or not pass_rates.get("executions"):
        return _placeholder("Execution pass rate", "no executions yet", path)
    difficulties = list(pass_rates.get("by_difficulty") or [])
    histogram = list((pass_rates.get("by_instruction") or {}).get("histogram") or [])
    fig = _figure(10, 3.6)
    left, right = fig.subplots(1, 2)
    if difficulties:
        names = [str(d["difficulty"]) for d in difficulties]
        rates = [float(d["rate"]) * 100 for d in difficulties]
        bars = left.bar(range(len(names)), rates, color=PASS)
        for bar, d in zip(bars, difficulties, strict=True):
            left.annotate(f"{d['passed']:,}/{d['executions']:,}",
                          (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
        left.set_xticks(range(len(names)), names)
    else:
        left.text(0.5, 0.5, "no difficulty known", ha="center", va="center",
                  transform=left.transAxes)
    left.set_ylim(0, 110)
    left.set_ylabel("responses passing (%)")
    left.set_title("Pass rate per difficulty")
    if histogram:
        right.bar(range(len(histogram)), [int(b["instructions"]) for b in histogram], color=BAR)
        right.set_xticks(range(len(histogram)), [str(b["bin"]) for b in histogram],
                         rotation=45, ha="right", fontsize=8)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("share of an instruction's responses that pass")
    right.set_ylabel("instructions")
    right.set_title("Pass rate per instruction")
    fig.tight_layout()
    return _save(fig, path)


def size_order(label: str) -> int:
    """Where a cluster-size label sorts: "3" -> 3, "11-20" -> 11, "101+" -> 101."""
    digits = re.match(r"\d+", label)
    return int(digits.group()) if digits else 0


def cluster_size_chart(sizes: Sequence[Mapping[str, int]], path: str | Path) -> Path:
    """Histogram of near-duplicate cluster sizes: {"size", "clusters"} rows."""
    if not sizes:
        return _placeholder("Cluster sizes", "no clusters yet", path)
    ordered = sorted(sizes, key=lambda s: size_order(str(s["size"])))
    fig = _figure(8, 3.4)
    ax = fig.add_subplot()
    xs = [str(s["size"]) for s in ordered]
    bars = ax.bar(range(len(xs)), [int(s["clusters"]) for s in ordered], color=BAR)
    for bar, s in zip(bars, ordered, strict=True):
        ax.annotate(f"{int(s['clusters']):,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(range(len(xs)), xs, fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("functions in the cluster")
    ax.set_ylabel("clusters")
    if max(int(s["clusters"]) for s in ordered) >= 1000:
        ax.set_yscale("log")
    ax.set_title("Near-duplicate cluster sizes")
    fig.tight_layout()
    return _save(fig, path)


def top_concepts_chart(concepts: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Most frequent concepts, most frequent on top: {"concept", "seeds"} rows."""
    if not concepts:
        return _placeholder("Top concepts", "no concepts yet", path)
    fig = _figure(8, _height(len(concepts)))
    ax = fig.add_subplot()
    counts = [int(c["seeds"]) for c in concepts]
    bars = ax.barh(range(len(concepts)), counts, color=BAR)
    _label_bars(ax, bars, [f"{n:,}" for n in counts])
    ax.set_yticks(range(len(concepts)), [str(c["concept"])[:60] for c in concepts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(right=max(counts) * 1.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("seeds naming the concept")
    ax.set_title("Top concepts")
    fig.tight_layout()
    return _save(fig, path)


# --- trends: one point per night, oldest on the left -----------------------------------

def _night_axis(ax: Any, nights: Sequence[str]) -> None:
    crowded = len(nights) > 4
    ax.set_xticks(range(len(nights)), list(nights), fontsize=8,
                  rotation=45 if crowded else 0, ha="right" if crowded else "center")
    ax.set_xlim(-0.5, len(nights) - 0.5)
    ax.set_xlabel("night (first stage start)")


def _percent(values: Sequence[float | None]) -> list[float]:
    # NaN, not 0, for an unknown value: the line breaks there instead of diving.
    return [math.nan if v is None else 100 * float(v) for v in values]


def _mark_regressions(ax: Any, points: Sequence[tuple[int, float]]) -> None:
    if points:
        ax.scatter([x for x, _ in points], [y for _, y in points], marker="v", s=140,
                   color=REGRESSION, zorder=5, label="regression")


def yield_trend_chart(nights: Sequence[str], yields: Mapping[str, Sequence[float | None]],
                      marked: Collection[tuple[str, int]], path: str | Path) -> Path:
    """A line per stage of its yield (rows out per row in) night by night; `marked`
    (stage, night index) points are regressions, drawn as red triangles.

    Extract's yield is functions per file, so above 100% is normal there.
    """
    series = {stage: _percent(values) for stage, values in yields.items()
              if any(v is not None for v in values)}
    if not nights or not series:
        return _placeholder("Yield per stage", "no finished stage runs yet", path)
    # Log scale: yields span 20% filters to 1,000% fan-outs (respond's n samples), and on
    # it a halving is the same drop for every stage, the regression rule's own measure.
    # A yield of 0 has no place on it: it sits on the floor, the bottom of the axis.
    positive = [y for ys in series.values() for y in ys if y > 0]
    floor = min(positive) / 2 if positive else 1.0
    series = {stage: [y if math.isnan(y) else max(y, floor) for y in ys] for stage, ys in series.items()}
    fig = _figure(10, 4.2)
    ax = fig.add_subplot()
    for index, (stage, ys) in enumerate(series.items()):
        ax.plot(range(len(nights)), ys, marker="o", markersize=4,
                color=PALETTE[index % len(PALETTE)], label=stage)
    _mark_regressions(ax, [(night, series[stage][night]) for stage, night in marked
                           if stage in series and not math.isnan(series[stage][night])])
    _night_axis(ax, nights)
    ax.set_yscale("log")
    ax.set_ylim(floor * 0.8, max([*positive, floor]) * 1.5)
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(axis="y", color="#EEEEEE")
    ax.set_ylabel("rows out per row in (%, log scale)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Yield per stage, night by night")
    fig.tight_layout()
    return _save(fig, path)


def pass_rate_trend_chart(nights: Sequence[str], rates: Sequence[float | None],
                          marked: Collection[int], path: str | Path) -> Path:
    """The share of executed responses that passed, night by night; `marked` night
    indexes are regressions."""
    if not nights or all(rate is None for rate in rates):
        return _placeholder("Execution pass rate per night", "no executions in these nights", path)
    fig = _figure(10, 3.4)
    ax = fig.add_subplot()
    ys = _percent(rates)
    ax.plot(range(len(nights)), ys, marker="o", color=PASS, label="pass rate")
    for x, y in enumerate(ys):
        if not math.isnan(y):
            ax.annotate(f"{y:.0f}%", (x, y), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8)
    _mark_regressions(ax, [(night, ys[night]) for night in marked if not math.isnan(ys[night])])
    _night_axis(ax, nights)
    ax.set_ylim(0, 110)
    ax.set_ylabel("responses passing (%)")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Execution pass rate per night")
    fig.tight_layout()
    return _save(fig, path)


def money(value: float) -> str:
    """A cost as people read it: cents for sums, three digits for fractions of a unit."""
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"


def cost_trend_chart(nights: Sequence[str], costs: Sequence[float | None], path: str | Path) -> Path:
    """Estimated cost per night (bars); a night without a price says "n/a"."""
    if not nights or all(cost is None for cost in costs):
        return _placeholder("Cost per night", "no cost estimate: no cost.* price is set", path)
    fig = _figure(10, 3.4)
    ax = fig.add_subplot()
    heights = [cost or 0.0 for cost in costs]
    bars = ax.bar(range(len(nights)), heights, color=BAR)
    for bar, cost in zip(bars, costs, strict=True):
        ax.annotate("n/a" if cost is None else money(cost),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
    _night_axis(ax, nights)
    ax.set_ylim(0, max([*heights, 0.0]) * 1.2 or 1)
    ax.set_ylabel("estimated cost (cost.* currency)")
    ax.set_title("Cost per night")
    fig.tight_layout()
    return _save(fig, path)
