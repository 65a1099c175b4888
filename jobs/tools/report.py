"""`selfalign report`: where the lake stands, as HTML pages with PNG charts.

`collect_summary` does every aggregation in Spark and collects only small results
(a row per funnel step, per reject reason, per difficulty, per histogram bucket,
per top concept; report_trends.py per night and stage, report_examples.py a few rows
per reject reason); `render_report` (report_html.py) turns that summary into PNGs,
`summary.json` and self-contained pages: `index.html`, `trends.html`, `examples.html`.

The report only reads: a table that does not exist (a stage that never ran, or
a table whose stage is not written yet, like `executions` and `sft`) counts as
0 and shows as "not run"; it is never created.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.readers import DECONTAMINATED, REPRESENTATIVES, SEEDS, TYPECHECKED, Gate
from jobs.core.registry import stage_order
from jobs.tools.report_examples import collect_examples
from jobs.tools.report_html import CHARTS, LATEST, render_report
from jobs.tools.report_trends import NIGHTS, collect_trends
from jobs.tools.report_trends_html import TREND_CHARTS
from schemas.outcome import Source

TOP_CONCEPTS = 20
# Per-instruction pass-rate buckets: the extremes get their own bar, they are the news.
PASS_BINS = ("0%", "1-19%", "20-39%", "40-59%", "60-79%", "80-99%", "100%")
# Cluster sizes beyond 10 are grouped so a long tail stays a handful of bars.
SIZE_BINS = ((11, 20), (21, 50), (51, 100))


@dataclass(frozen=True)
class FunnelStep:
    key: str
    label: str
    stage: Source
    table: str
    where: Callable[[], Column] | None = None
    needs: tuple[str, ...] = ()
    distinct: str | None = None


def gated(gate: Gate, label: str, stage: Source) -> FunnelStep:
    """A funnel step counting a verdict table's kept rows, as the next stage reads them."""
    return FunnelStep(gate.name, label, stage, gate.table.name, gate.kept, (gate.column,))


FUNNEL: tuple[FunnelStep, ...] = (
    FunnelStep("files", "files read", Source.EXTRACT, "progress",
               lambda: F.col("stage") == F.lit(Source.EXTRACT.value), ("stage", "input_key"), "input_key"),
    FunnelStep("functions", "functions extracted", Source.EXTRACT, "functions"),
    gated(DECONTAMINATED, "not contaminated", Source.DECONTAMINATE),
    gated(TYPECHECKED, "type-check passed", Source.TYPECHECK),
    gated(REPRESENTATIVES, "dedup representatives", Source.DEDUP),
    gated(SEEDS, "judged good (seeds)", Source.JUDGE),
    FunnelStep("concepts", "seeds with concepts", Source.CONCEPTS, "concepts"),
    FunnelStep("instructions", "instructions", Source.INSTRUCT, "instructions"),
    FunnelStep("responses", "responses", Source.RESPOND, "responses"),
    FunnelStep("passed", "executions passed", Source.EXECUTE, "executions",
               lambda: F.col("passed"), ("passed",)),
    FunnelStep("sft", "SFT pairs", Source.SELECT, "sft"),
)


# --- reading the lake (never creating tables) ---------------------------------------

def _table(ctx: Context, name: str) -> DataFrame | None:
    return ctx.lake.peek(name)


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


def _rejects(rejects: DataFrame | None) -> dict[str, dict[str, int]]:
    if rejects is None:
        return {}
    found: dict[str, dict[str, int]] = {}
    for r in rejects.groupBy("stage", "reason").count().collect():
        found.setdefault(r["stage"], {})[r["reason"]] = int(r["count"])
    return {
        stage: dict(sorted(found[stage].items(), key=lambda item: (-item[1], item[0])))
        for stage in sorted(found, key=stage_order)
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
    for stage in sorted(latest, key=stage_order):
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


def collect_summary(ctx: Context, run_id: str | None = None, nights: int = NIGHTS) -> dict[str, Any]:
    """Every number the report shows, aggregated in Spark; only small results collected.

    `trends` covers the `nights` nights up to the reported run, `examples` a few pairs
    and rejects with their lineage: in summary.json too, for schedulers to read.
    """
    names = {step.table for step in FUNNEL} | {"rejects", "runs", "executions", "responses",
                                                "instructions", "clusters", "concepts"}
    tables = {name: _table(ctx, name) for name in sorted(names)}
    chosen, stages = _run(tables["runs"], run_id)
    known = chosen if stages else None  # LATEST, or an id with no runs, names no night
    return {
        "run_id": chosen,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lake": ctx.lake.describe(),
        "run": stages,
        "funnel": _funnel(ctx, tables),
        "rejects": _rejects(tables["rejects"]),
        "pass_rates": _pass_rates(tables),
        "cluster_sizes": _cluster_sizes(tables["clusters"]),
        "top_concepts": _top_concepts(tables["concepts"]),
        "trends": collect_trends(tables, known, nights),
        "examples": collect_examples(tables, known),
        "charts": {**CHARTS, **TREND_CHARTS},
    }


def build_report(ctx: Context, run_id: str | None = None, out: str | Path = "reports",
                 nights: int = NIGHTS) -> Path:
    return render_report(collect_summary(ctx, run_id, nights), out)
