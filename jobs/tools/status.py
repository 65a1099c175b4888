"""`selfalign status`: one screen telling an operator where the lake stands."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import Window
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.lease import lease_line
from jobs.core.registry import STAGES
from jobs.core.runner import pending_keys_of
from jobs.core.stage import Stage
from schemas import REJECTS, RUNS, TABLES

# Status is a few dozen small queries (a count per table, a pending count per stage),
# each mostly planning and Delta log reads on the driver: submitted side by side they
# overlap (Spark runs jobs from several threads, Connect serves several requests).
_PARALLEL_QUERIES = 8
NIGHTS = 5  # nights shown with their usage and cost


def _table_count(ctx: Context, name: str) -> str:
    table = ctx.lake.peek(TABLES[name])
    return "-" if table is None else f"{table.count():,}"


def _table_counts(ctx: Context, pool: ThreadPoolExecutor) -> list[tuple[str, str]]:
    return list(zip(TABLES, pool.map(lambda name: _table_count(ctx, name), TABLES), strict=True))


def _last_runs(ctx: Context) -> dict[str, dict]:
    latest = Window.partitionBy("stage").orderBy(
        F.col("started_at").desc(), F.col("ended_at").desc_nulls_last()
    )
    runs = (
        ctx.lake.read(RUNS).withColumn("_n", F.row_number().over(latest)).where(F.col("_n") == 1)
    )
    return {r["stage"]: r.asDict() for r in runs.collect()}


def _nights(ctx: Context, nights: int = NIGHTS) -> list[dict]:
    """The last nights (run ids), newest first, with what they used and cost."""
    ended = ctx.lake.read(RUNS).where(F.col("status") != "running")
    per_night = ended.groupBy("run_id").agg(
        F.min("started_at").alias("started_at"),
        F.count("*").alias("stages"),
        F.sum(F.when(F.col("status") == "failed", 1).otherwise(0)).alias("failed"),
        *(F.sum(c).alias(c) for c in ("tokens_in", "tokens_out", "gpu_seconds", "cpu_seconds")),
        # Null when no stage run of the night was priced (no cost.* set then).
        F.when(F.count("cost") > 0, F.sum("cost")).alias("cost"),
    )
    return [r.asDict() for r in per_night.orderBy(F.col("started_at").desc()).limit(nights).collect()]


def _usage_cells(row: dict | None) -> list[str]:
    """tokens in, tokens out, GPU-hours, cost of a `runs` row or a night ('-' unknown)."""
    if row is None:
        return ["-"] * 4
    gpu = row.get("gpu_seconds")
    return ["-" if row.get(k) is None else f"{row[k]:,}" for k in ("tokens_in", "tokens_out")] + [
        "-" if gpu is None else f"{gpu / 3600:,.2f}",
        "-" if row.get("cost") is None else f"{row['cost']:,.2f}",
    ]


def _top_reasons(ctx: Context, per_stage: int = 3) -> dict[str, list[tuple[str, int]]]:
    counts = ctx.lake.read(REJECTS).groupBy("stage", "reason").count()
    ranked = counts.withColumn(
        "_n", F.row_number().over(Window.partitionBy("stage").orderBy(F.col("count").desc(), "reason"))
    ).where(F.col("_n") <= per_stage)
    top: dict[str, list[tuple[str, int]]] = {}
    for r in ranked.orderBy("stage", "_n").collect():
        top.setdefault(r["stage"], []).append((r["reason"], r["count"]))
    return top


def _pending(ctx: Context, stage: str) -> str:
    declared = STAGES[stage]
    if not isinstance(declared, Stage):  # a step (export) rewrites its files each run
        return "-"
    try:
        return f"{pending_keys_of(declared, ctx).count():,}"
    except Exception as exc:  # an unreadable input is itself status worth showing
        return f"? ({type(exc).__name__})"


def render_status(ctx: Context) -> str:
    with ThreadPoolExecutor(_PARALLEL_QUERIES, thread_name_prefix="status") as pool:
        counts = _table_counts(ctx, pool)  # first: reading a stage's input creates it if missing
        runs = _last_runs(ctx)
        nights = _nights(ctx)
        reasons = _top_reasons(ctx)
        pending_by_stage = dict(zip(STAGES, pool.map(lambda stage: _pending(ctx, stage), STAGES),
                                    strict=True))
    lines = [f"lake: {ctx.lake.describe()}"]
    with contextlib.suppress(Exception):  # a lease that cannot be read is no reason to stop
        if held := lease_line(ctx):
            lines.append(held)
    lines += ["", f"{'table':<16}{'rows':>12}"]
    lines += [f"{name:<16}{count:>12}" for name, count in counts]
    lines += ["", f"{'stage':<14}{'last run':<22}{'state':<11}{'run id':<28}{'in':>9}{'out':>9}"
                  f"{'rejected':>10}{'pending':>9}{'tok. in':>12}{'tok. out':>11}{'GPU-h':>7}{'cost':>9}"
                  "  top reject reasons"]
    for stage in STAGES:
        run = runs.get(stage)
        when = run["started_at"].strftime("%Y-%m-%d %H:%M:%S") if run else "never"
        state = run["status"] if run else "-"
        run_id = run["run_id"] if run else "-"
        counts = [run.get(k) if run else None for k in ("rows_in", "rows_out", "rows_rejected")]
        shown = ["-" if c is None else f"{c:,}" for c in counts]
        top = ", ".join(f"{reason} {n:,}" for reason, n in reasons.get(stage, []))
        usage = _usage_cells(run)
        lines.append(
            f"{stage:<14}{when:<22}{state:<11}{run_id:<27} {shown[0]:>9}{shown[1]:>9}{shown[2]:>10}"
            f"{pending_by_stage[stage]:>9}{usage[0]:>12}{usage[1]:>11}{usage[2]:>7}{usage[3]:>9}  {top}"
        )
    lines += ["", f"{'night (run id)':<28}{'started':<22}{'stages':>7}{'failed':>7}{'tok. in':>12}"
                  f"{'tok. out':>11}{'GPU-h':>7}{'CPU-h':>7}{'cost':>9}"]
    for night in nights:
        usage = _usage_cells(night)
        cpu = night.get("cpu_seconds")
        lines.append(f"{night['run_id']:<28}{night['started_at'].strftime('%Y-%m-%d %H:%M:%S'):<22}"
                     f"{night['stages']:>7}{night['failed']:>7}{usage[0]:>12}{usage[1]:>11}{usage[2]:>7}"
                     f"{'-' if cpu is None else f'{cpu / 3600:,.2f}':>7}{usage[3]:>9}")
    return "\n".join(lines)


def print_status(ctx: Context) -> None:
    print(render_status(ctx))
