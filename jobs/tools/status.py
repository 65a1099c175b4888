"""`selfalign status`: one screen telling an operator where the lake stands."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import Window
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.lease import lease_line
from jobs.core.registry import STAGES
from jobs.core.runner import pending_of
from jobs.core.stage import Stage
from schemas import REJECTS, RUNS, TABLES

# Status is a few dozen small queries (a count per table, a pending count per stage),
# each mostly planning and Delta log reads on the driver: submitted side by side they
# overlap (Spark runs jobs from several threads, Connect serves several requests).
_PARALLEL_QUERIES = 8


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
        return f"{pending_of(declared, ctx).count():,}"
    except Exception as exc:  # an unreadable input is itself status worth showing
        return f"? ({type(exc).__name__})"


def render_status(ctx: Context) -> str:
    with ThreadPoolExecutor(_PARALLEL_QUERIES, thread_name_prefix="status") as pool:
        counts = _table_counts(ctx, pool)  # first: reading a stage's input creates it if missing
        runs = _last_runs(ctx)
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
                  f"{'rejected':>10}{'pending':>9}  top reject reasons"]
    for stage in STAGES:
        run = runs.get(stage)
        when = run["started_at"].strftime("%Y-%m-%d %H:%M:%S") if run else "never"
        state = run["status"] if run else "-"
        run_id = run["run_id"] if run else "-"
        counts = [run.get(k) if run else None for k in ("rows_in", "rows_out", "rows_rejected")]
        shown = ["-" if c is None else f"{c:,}" for c in counts]
        top = ", ".join(f"{reason} {n:,}" for reason, n in reasons.get(stage, []))
        lines.append(
            f"{stage:<14}{when:<22}{state:<11}{run_id:<27} {shown[0]:>9}{shown[1]:>9}{shown[2]:>10}"
            f"{pending_by_stage[stage]:>9}  {top}"
        )
    return "\n".join(lines)


def print_status(ctx: Context) -> None:
    print(render_status(ctx))
