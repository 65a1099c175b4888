"""`selfalign report`: where the lake stands, as one HTML page with PNG charts.

`collect_summary` does every aggregation in Spark and collects only small results
(a row per funnel step, per reject reason, per difficulty, per histogram bucket,
per top concept); `render_report` turns that summary into PNGs, `summary.json`
and a self-contained `index.html` that references the PNGs by relative path.

The report only reads: a table that does not exist (a stage that never ran, or
a table whose stage is not written yet, like `executions` and `sft`) counts as
0 and shows as "not run"; it is never created.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.readers import DECONTAMINATED, REPRESENTATIVES, SEEDS, TYPECHECKED, Gate
from jobs.core.registry import STAGES

LATEST = "latest"
TOP_CONCEPTS = 20
# Per-instruction pass-rate buckets: the extremes get their own bar, they are the news.
PASS_BINS = ("0%", "1-19%", "20-39%", "40-59%", "60-79%", "80-99%", "100%")
# Cluster sizes beyond 10 are grouped so a long tail stays a handful of bars.
SIZE_BINS = ((11, 20), (21, 50), (51, 100))

CHARTS = {
    "funnel": "funnel.png",
    "rejects": "rejects.png",
    "pass_rates": "pass_rates.png",
    "cluster_sizes": "cluster_sizes.png",
    "top_concepts": "top_concepts.png",
}


@dataclass(frozen=True)
class FunnelStep:
    key: str
    label: str
    stage: str
    table: str
    where: Callable[[], Column] | None = None
    needs: tuple[str, ...] = ()
    distinct: str | None = None


def gated(gate: Gate, label: str, stage: str) -> FunnelStep:
    """A funnel step counting a verdict table's kept rows, as the next stage reads them."""
    return FunnelStep(gate.name, label, stage, gate.table.name, gate.kept, (gate.column,))


FUNNEL: tuple[FunnelStep, ...] = (
    FunnelStep("files", "files read", "extract", "progress",
               lambda: F.col("stage") == F.lit("extract"), ("stage", "input_key"), "input_key"),
    FunnelStep("functions", "functions extracted", "extract", "functions"),
    gated(DECONTAMINATED, "not contaminated", "decontaminate"),
    gated(TYPECHECKED, "type-check passed", "typecheck"),
    gated(REPRESENTATIVES, "dedup representatives", "dedup"),
    gated(SEEDS, "judged good (seeds)", "judge"),
    FunnelStep("concepts", "seeds with concepts", "concepts", "concepts"),
    FunnelStep("instructions", "instructions", "instruct", "instructions"),
    FunnelStep("responses", "responses", "respond", "responses"),
    FunnelStep("passed", "executions passed", "execute", "executions",
               lambda: F.col("passed"), ("passed",)),
    FunnelStep("sft", "SFT pairs", "select", "sft"),
)


# --- reading the lake (never creating tables) ---------------------------------------

def _table(ctx: Context, name: str) -> DataFrame | None:
    path = ctx.lake.path(name)
    if not DeltaTable.isDeltaTable(ctx.spark, path):
        return None
    return ctx.spark.read.format("delta").load(path)


def _funnel(ctx: Context, tables: dict[str, DataFrame | None]) -> list[dict[str, Any]]:
    parts: list[DataFrame] = []
    readable: set[str] = set()
    for step in FUNNEL:
        df = tables[step.table]
        if df is None or not set(step.needs) <= set(df.columns):
            continue
        readable.add(step.key)
        rows = df.where(step.where()) if step.where else df
        counted = F.count_distinct(step.distinct) if step.distinct else F.count(F.lit(1))
        parts.append(rows.agg(counted.cast("long").alias("n")).select(F.lit(step.key).alias("key"), "n"))
    counts: dict[str, int] = {}
    if parts:
        union = parts[0]
        for part in parts[1:]:
            union = union.unionByName(part)
        counts = {r["key"]: int(r["n"]) for r in union.collect()}
    steps = []
    for step in FUNNEL:
        count = counts.get(step.key, 0)
        ran = step.key in readable
        if step.key == "files":
            # `progress` is shared by every stage: extract ran if it committed files,
            # or if its output table exists.
            ran = count > 0 or tables["functions"] is not None
        steps.append({"key": step.key, "label": step.label, "stage": step.stage,
                      "table": step.table, "count": count, "ran": ran})
    return steps


def _stage_order(stage: str) -> tuple[int, str]:
    order = list(STAGES)
    return (order.index(stage) if stage in order else len(order), stage)


def _rejects(rejects: DataFrame | None) -> dict[str, dict[str, int]]:
    if rejects is None:
        return {}
    found: dict[str, dict[str, int]] = {}
    for r in rejects.groupBy("stage", "reason").count().collect():
        found.setdefault(r["stage"], {})[r["reason"]] = int(r["count"])
    return {
        stage: dict(sorted(found[stage].items(), key=lambda item: (-item[1], item[0])))
        for stage in sorted(found, key=_stage_order)
    }


def _pass_bucket(passed: Column, total: Column) -> Column:
    """PASS_BINS label of passed/total, in integer arithmetic (3/5 must land in 60-79%)."""
    bucket = F.when(passed <= 0, F.lit(PASS_BINS[0]))
    for fifth, label in enumerate(PASS_BINS[1:-2], start=1):
        bucket = bucket.when(passed * 5 < total * fifth, F.lit(label))
    return bucket.when(passed < total, F.lit(PASS_BINS[-2])).otherwise(F.lit(PASS_BINS[-1]))


def _pass_rates(tables: dict[str, DataFrame | None]) -> dict[str, Any] | None:
    executions = tables["executions"]
    if executions is None or "passed" not in executions.columns:
        return None
    rows = executions.select(
        *[c for c in ("response_id", "instruction_id") if c in executions.columns],
        F.coalesce(F.col("passed").cast("boolean"), F.lit(False)).alias("passed"),
    )
    responses = tables["responses"]
    if "instruction_id" not in rows.columns:
        if responses is not None and "response_id" in rows.columns:
            rows = rows.join(responses.select("response_id", "instruction_id"),
                             on="response_id", how="left")
        else:
            rows = rows.withColumn("instruction_id", F.lit(None).cast("string"))
    instructions = tables["instructions"]
    if instructions is not None:
        rows = rows.join(instructions.select("instruction_id", "difficulty"),
                         on="instruction_id", how="left")
    else:
        rows = rows.withColumn("difficulty", F.lit(None).cast("string"))
    rows = rows.withColumn("difficulty", F.coalesce(F.col("difficulty"), F.lit("unknown")))

    passed = F.sum(F.col("passed").cast("long"))
    by_difficulty = [
        {"difficulty": r["difficulty"], "executions": int(r["executions"]), "passed": int(r["passed"]),
         "rate": round(r["passed"] / r["executions"], 4)}
        for r in rows.groupBy("difficulty")
        .agg(F.count(F.lit(1)).alias("executions"), passed.alias("passed"))
        .orderBy("difficulty").collect()
    ]
    per_instruction = (
        rows.where(F.col("instruction_id").isNotNull())
        .groupBy("instruction_id")
        .agg(passed.alias("passed"), F.count(F.lit(1)).alias("total"))
        .groupBy(_pass_bucket(F.col("passed"), F.col("total")).alias("bin"))
        .count()
    )
    buckets = {r["bin"]: int(r["count"]) for r in per_instruction.collect()}
    total = sum(d["executions"] for d in by_difficulty)
    total_passed = sum(d["passed"] for d in by_difficulty)
    return {
        "executions": total,
        "passed": total_passed,
        "rate": round(total_passed / total, 4) if total else 0.0,
        "by_difficulty": by_difficulty,
        "by_instruction": {
            "instructions": sum(buckets.values()),
            "with_a_pass": sum(n for label, n in buckets.items() if label != PASS_BINS[0]),
            "histogram": [{"bin": label, "instructions": buckets.get(label, 0)} for label in PASS_BINS],
        },
    }


def _size_label(size: Column) -> Column:
    label = F.when(size <= 10, size.cast("string"))
    for low, high in SIZE_BINS:
        label = label.when(size <= high, F.lit(f"{low}-{high}"))
    return label.otherwise(F.lit(f"{SIZE_BINS[-1][1] + 1}+"))


def _size_key(label: str) -> int:
    return int(re.match(r"\d+", label).group())  # type: ignore[union-attr]


def _cluster_sizes(clusters: DataFrame | None) -> list[dict[str, Any]]:
    if clusters is None:
        return []
    sizes = (
        clusters.where(F.col("is_representative"))
        .groupBy(_size_label(F.col("cluster_size")).alias("size"))
        .count()
        .collect()
    )
    return [{"size": r["size"], "clusters": int(r["count"])}
            for r in sorted(sizes, key=lambda r: _size_key(r["size"]))]


def _top_concepts(concepts: DataFrame | None, limit: int = TOP_CONCEPTS) -> list[dict[str, Any]]:
    if concepts is None:
        return []
    named = (
        concepts.select("seed_id", F.explode("concepts").alias("concept"))
        .select("seed_id", F.lower(F.trim(F.col("concept"))).alias("concept"))
        .where(F.col("concept") != F.lit(""))
    )
    top = (
        named.groupBy("concept")
        .agg(F.count_distinct("seed_id").alias("seeds"))
        .orderBy(F.col("seeds").desc(), F.col("concept"))
        .limit(limit)
    )
    return [{"concept": r["concept"], "seeds": int(r["seeds"])} for r in top.collect()]


def _run(runs: DataFrame | None, run_id: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The report's run id (the newest run unless given) and that run's stage results."""
    if runs is None:
        return run_id or LATEST, []
    if run_id is None:
        newest = runs.orderBy(F.col("started_at").desc(), F.col("run_id").desc()).select("run_id").first()
        if newest is None:
            return LATEST, []
        run_id = str(newest["run_id"])
    latest: dict[str, dict[str, Any]] = {}
    for r in runs.where(F.col("run_id") == F.lit(run_id)).collect():
        row = r.asDict()
        seen = latest.get(row["stage"])
        # The end row (succeeded/failed) wins over the start row of the same run.
        if seen is None or (seen["status"] == "running" and row["status"] != "running"):
            latest[row["stage"]] = row
    stages = []
    for stage in sorted(latest, key=_stage_order):
        row = latest[stage]
        seconds = None
        if row["ended_at"] is not None:
            seconds = round((row["ended_at"] - row["started_at"]).total_seconds(), 1)
        stages.append({
            "stage": stage, "status": row["status"],
            "started_at": row["started_at"].isoformat(sep=" ", timespec="seconds"),
            "seconds": seconds, "rows_in": row["rows_in"], "rows_out": row["rows_out"],
            "rows_rejected": row["rows_rejected"],
        })
    return run_id, stages


def collect_summary(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Every number the report shows, aggregated in Spark; only small results collected."""
    names = {step.table for step in FUNNEL} | {"rejects", "runs", "executions", "responses",
                                                "instructions", "clusters", "concepts"}
    tables = {name: _table(ctx, name) for name in sorted(names)}
    chosen, stages = _run(tables["runs"], run_id)
    return {
        "run_id": chosen,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lake": ctx.lake.root,
        "run": stages,
        "funnel": _funnel(ctx, tables),
        "rejects": _rejects(tables["rejects"]),
        "pass_rates": _pass_rates(tables),
        "cluster_sizes": _cluster_sizes(tables["clusters"]),
        "top_concepts": _top_concepts(tables["concepts"]),
        "charts": dict(CHARTS),
    }


# --- rendering (no Spark) --------------------------------------------------------------

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


def _img(name: str, alt: str) -> str:
    return f'<img src="{_esc(CHARTS[name])}" alt="{_esc(alt)}">'


def _funnel_section(summary: dict[str, Any]) -> str:
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
    return f"<h2>Funnel</h2>{_img('funnel', alt)}{table}"


def _run_section(summary: dict[str, Any]) -> str:
    stages = summary["run"]
    if not stages:
        return f"<h2>Run {_esc(summary['run_id'])}</h2><p>No stage runs recorded under this id.</p>"
    rows = [[s["stage"], s["status"], s["started_at"], s["seconds"], s["rows_in"], s["rows_out"],
             s["rows_rejected"]] for s in stages]
    table = _table_html(["stage", "status", "started (UTC)", "seconds", "in", "out", "rejected"],
                        rows, numeric_from=3)
    return f"<h2>Run {_esc(summary['run_id'])}</h2>{table}"


def _rejects_section(summary: dict[str, Any]) -> str:
    rejects = summary["rejects"]
    rows = [[stage, reason, n] for stage, reasons in rejects.items() for reason, n in reasons.items()]
    alt = "Reject reasons chart: " + ("; ".join(f"{s} {r} {n:,}" for s, r, n in rows) or "no rejects yet")
    table = _table_html(["stage", "reason", "rows"], rows, numeric_from=2) if rows else "<p>No rejects yet.</p>"
    return f"<h2>Reject reasons</h2>{_img('rejects', alt)}{table}"


def _pass_section(summary: dict[str, Any]) -> str:
    rates = summary["pass_rates"]
    if not rates or not rates["executions"]:
        return ("<h2>Execution pass rates</h2>"
                f"{_img('pass_rates', 'Pass rate chart: no executions yet')}<p>No executions yet.</p>")
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
    return f"<h2>Execution pass rates</h2>{_img('pass_rates', alt)}{overall}{difficulty}{spread}"


def _clusters_section(summary: dict[str, Any]) -> str:
    sizes = summary["cluster_sizes"]
    alt = "Cluster size histogram: " + (
        "; ".join(f"size {s['size']}: {s['clusters']:,} clusters" for s in sizes) or "no clusters yet"
    )
    table = (_table_html(["functions in cluster", "clusters"], [[s["size"], s["clusters"]] for s in sizes])
             if sizes else "<p>No clusters yet.</p>")
    return f"<h2>Near-duplicate cluster sizes</h2>{_img('cluster_sizes', alt)}{table}"


def _concepts_section(summary: dict[str, Any]) -> str:
    top = summary["top_concepts"]
    alt = "Top concepts chart: " + ("; ".join(f"{c['concept']} {c['seeds']:,}" for c in top)
                                     or "no concepts yet")
    table = (_table_html(["concept", "seeds"], [[c["concept"], c["seeds"]] for c in top])
             if top else "<p>No concepts yet.</p>")
    return f"<h2>Top concepts</h2>{_img('top_concepts', alt)}{table}"


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


def render_html(summary: dict[str, Any]) -> str:
    sections = [
        _funnel_section(summary), _run_section(summary), _rejects_section(summary),
        _pass_section(summary), _clusters_section(summary), _concepts_section(summary),
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
    index = target / "index.html"
    index.write_text(render_html(summary), encoding="utf-8")
    return index


def build_report(ctx: Context, run_id: str | None = None, out: str | Path = "reports") -> Path:
    return render_report(collect_summary(ctx, run_id), out)
