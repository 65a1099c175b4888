"""`selfalign plan`: what a run would do now, without doing it.

Per stage, in DAG order:

- pending: input keys not yet in `progress`, counted from key columns only (Spark prunes
  every other column; tests/jobs/test_plan.py checks no generated or source text is read);
- expected in: pending, plus what the stage before is expected to hand on this run;
- expected out, tokens, GPU- and CPU-hours, time and cost: expected in times what one
  input row yielded and cost over the last nights (`runs`), priced with today's `cost.*`.

The figures are as good as the nights behind them; a stage that never ran has none and
says so. One screen, or `--json` for a scheduler.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.progress import duration
from jobs.core.registry import STAGES, TABLE_STAGES
from jobs.core.runner import pending_keys_of
from schemas import RUNS
from udfs.accounting import Prices, Usage

NIGHTS = 7  # the history the rates come from: the last week of nightly runs
_SUMMED = ("rows_in", "rows_out", "tokens_in", "tokens_out", "gpu_seconds", "cpu_seconds", "seconds")


@dataclass(frozen=True)
class History:
    """One stage's succeeded runs over the last nights, summed."""

    nights: int
    rows_in: float
    rows_out: float
    tokens_in: float
    tokens_out: float
    gpu_seconds: float
    cpu_seconds: float
    seconds: float

    def per_row(self, name: str) -> float:
        return float(getattr(self, name)) / self.rows_in if self.rows_in else 0.0


@dataclass(frozen=True)
class StagePlan:
    stage: str
    pending: int
    expected_in: int
    expected_out: int | None  # None: no history to tell
    tokens_in: int | None
    tokens_out: int | None
    gpu_hours: float | None
    cpu_hours: float | None
    seconds: float | None
    cost: float | None
    nights: int  # nights of history behind the figures


def pending_keys(ctx: Context) -> dict[str, DataFrame]:
    """Each table stage's pending input, as its key column only."""
    return {name: pending_keys_of(stage, ctx) for name, stage in TABLE_STAGES.items()}


def history(ctx: Context, nights: int = NIGHTS) -> dict[str, History]:
    """Per stage, its succeeded runs with input during the last `nights` run ids."""
    runs = ctx.lake.read(RUNS).where(F.col("status") == "succeeded")
    recent = (runs.groupBy("run_id").agg(F.min("started_at").alias("_first"))
              .orderBy(F.col("_first").desc()).limit(nights).select("run_id"))
    seconds = F.unix_timestamp("ended_at") - F.unix_timestamp("started_at")
    sums = (runs.join(recent, on="run_id", how="left_semi").where(F.col("rows_in") > 0)
            .withColumn("seconds", seconds.cast("double"))
            .groupBy("stage")
            .agg(F.count_distinct("run_id").alias("nights"),
                 *(F.sum(F.coalesce(F.col(c).cast("double"), F.lit(0.0))).alias(c) for c in _SUMMED)))
    return {row["stage"]: History(**{k: row[k] for k in ("nights", *_SUMMED)}) for row in sums.collect()}


def plan_stages(pending: dict[str, int], past: dict[str, History], prices: Prices) -> list[StagePlan]:
    """The expected run, stage by stage: what each stage is expected to emit flows on to
    the next at the rate the last nights saw (the next stage's rows in per row out)."""
    plans: list[StagePlan] = []
    handed_on = 0.0  # what the previous stage is expected to emit for this one
    previous: History | None = None
    for stage, waiting in pending.items():
        seen = past.get(stage)
        # How many input rows of this stage one output row of the stage before became.
        link = seen.rows_in / previous.rows_out if seen and previous and previous.rows_out else 1.0
        expected_in = waiting + handed_on * link
        if seen is None:
            plans.append(StagePlan(stage, waiting, round(expected_in), None, None, None, None, None,
                                   None, None, 0))
            handed_on, previous = 0.0, None
            continue
        usage = Usage(round(expected_in * seen.per_row("tokens_in")),
                      round(expected_in * seen.per_row("tokens_out")), 0.0,
                      expected_in * seen.per_row("gpu_seconds"), expected_in * seen.per_row("cpu_seconds"))
        expected_out = expected_in * seen.per_row("rows_out")
        plans.append(StagePlan(
            stage, waiting, round(expected_in), round(expected_out), usage.tokens_in, usage.tokens_out,
            usage.gpu_seconds / 3600, usage.cpu_seconds / 3600, expected_in * seen.per_row("seconds"),
            usage.cost(prices), seen.nights))
        handed_on, previous = expected_out, seen
    return plans


def pending_counts(ctx: Context) -> dict[str, int]:
    """Every stage's pending count in one Spark job (ten jobs would pay ten start-ups)."""
    frames = pending_keys(ctx)
    tagged = [frame.select(F.lit(stage).alias("stage")) for stage, frame in frames.items()]
    union = reduce(DataFrame.unionAll, tagged)
    counts = {row["stage"]: row["count"] for row in union.groupBy("stage").count().collect()}
    return {stage: int(counts.get(stage, 0)) for stage in frames}


def make_plan(ctx: Context, nights: int = NIGHTS) -> list[StagePlan]:
    with ThreadPoolExecutor(2, thread_name_prefix="plan") as pool:  # the history beside the counts
        past = pool.submit(history, ctx, nights)
        pending = pending_counts(ctx)
        return plan_stages(pending, past.result(), Prices.from_settings(ctx.cfg.cost))


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render_plan(plans: list[StagePlan], lake: str) -> str:
    nights = max((p.nights for p in plans), default=0)
    lines = [f"plan for {lake} (rates from the last {nights} night{'s' if nights != 1 else ''} of `runs`; "
             "- : no history)", "",
             f"{'stage':<14}{'pending':>10}{'exp. in':>10}{'exp. out':>10}{'tokens in':>12}"
             f"{'tokens out':>12}{'GPU-h':>8}{'CPU-h':>8}{'time':>9}{'cost':>10}"]
    for p in plans:
        lines.append(f"{p.stage:<14}{p.pending:>10,}{p.expected_in:>10,}{_n(p.expected_out):>10}"
                     f"{_n(p.tokens_in):>12}{_n(p.tokens_out):>12}{_n(p.gpu_hours, 2):>8}"
                     f"{_n(p.cpu_hours, 2):>8}{duration(p.seconds) if p.seconds is not None else '-':>9}"
                     f"{_n(p.cost, 2):>10}")
    known = [p for p in plans if p.seconds is not None]
    total_cost = [p.cost for p in plans if p.cost is not None]
    lines += ["", f"{'total':<14}{'':>52}{_n(sum(p.gpu_hours or 0 for p in known), 2):>8}"
                  f"{_n(sum(p.cpu_hours or 0 for p in known), 2):>8}"
                  f"{duration(sum(p.seconds or 0 for p in known)):>9}"
                  f"{_n(sum(total_cost), 2) if total_cost else '-':>10}"]
    steps = [name for name in STAGES if name not in TABLE_STAGES]
    lines.append(f"steps without pending rows (they rewrite their output each run): {', '.join(steps)}")
    return "\n".join(lines)


def plan_json(plans: list[StagePlan]) -> str:
    return json.dumps({"stages": [asdict(p) for p in plans]}, indent=2)
