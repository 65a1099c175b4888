"""The report's trends: what each of the last N nights did, and which night regressed.

A night is one run id (a nightly `selfalign run` gives all its tasks the job's id), and
nights are ordered by their first `started_at`. Per night and stage, from the `runs`
event log: rows in and out, yield, throughput, tokens, GPU-seconds and cost; per night,
from `rejects` its reject mix and from `executions` the sandbox pass rate of the rows it
wrote. Spark aggregates per (night, stage); only those few rows are collected.
`regressions` (plain Python) flags the nights whose yield or pass rate collapsed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from jobs.core.registry import stage_order
from schemas.outcome import Source

NIGHTS = 14
# Summed over a stage's end rows: a stage run twice under one id (a retried task) did
# disjoint work each time, and both times cost.
SUMMED = ("rows_in", "rows_out", "rows_rejected", "rows_failed", "tokens_in", "tokens_out",
          "gpu_seconds", "cost")
# The yardstick for a regression: a night at or below this share of the median of the
# nights before it. 0.6, not 0.5: a halved pass rate measured on a few hundred programs
# lands a little above or below half, and must show either way.
REGRESSION_SHARE = 0.6


def _ratio(part: float | None, whole: float | None, digits: int = 4) -> float | None:
    """part / whole, or None when either is unknown or the whole is 0."""
    if part is None or not whole:
        return None
    return round(part / whole, digits)


def _total(values: Iterable[float | None]) -> float | None:
    """The sum of the known values; None when none is known (never a made-up 0)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _label(started: datetime) -> str:
    return started.isoformat(sep=" ", timespec="minutes")


# --- Spark: small aggregates only ----------------------------------------------------

def _night_ids(runs: DataFrame, run_id: str | None, nights: int) -> list[tuple[str, datetime]]:
    """(run id, first start) of the last `nights` nights, oldest first, ending at
    `run_id` (an older night's report shows the nights up to it, as it would have that
    night; an id not in `runs` has none), or at the newest night."""
    firsts = runs.groupBy("run_id").agg(F.min("started_at").alias("first"))
    if run_id is not None:
        # Compared in Spark, never through a driver datetime and its time zone.
        mine = firsts.where(F.col("run_id") == F.lit(run_id)).select(F.col("first").alias("_mine"))
        firsts = firsts.join(mine, on=F.col("first") <= F.col("_mine"), how="inner")
    newest = firsts.orderBy(F.col("first").desc(), F.col("run_id").desc()).limit(nights).collect()
    return [(str(r["run_id"]), r["first"]) for r in reversed(newest)]


def _stage_rows(runs: DataFrame, ids: list[str]) -> list[Row]:
    """One row per (night, stage): the end rows' sums, and the latest run's status."""
    ended = F.col("ended_at").isNotNull()
    seconds = (F.unix_micros(F.col("ended_at")) - F.unix_micros(F.col("started_at"))) / F.lit(1e6)
    present = set(runs.columns)
    sums = [F.sum(F.when(ended, F.col(name))).alias(name) if name in present
            else F.lit(None).cast("double").alias(name) for name in SUMMED]  # a lake from before them
    return (
        runs.where(F.col("run_id").isin(ids))
        .groupBy("run_id", "stage")
        .agg(
            # A run's start and end rows share started_at; the end row says how it went,
            # and a start row alone is a run still going or one that crashed.
            F.max_by(F.col("status"), F.struct(F.col("started_at"), ended)).alias("status"),
            F.sum(F.when(ended, seconds)).alias("seconds"),
            *sums,
        )
        .collect()
    )


def _reject_mix(rejects: DataFrame | None, ids: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """night -> stage -> reason -> rejected rows, stages in DAG order, reasons by count."""
    if rejects is None:
        return {}
    found: dict[str, dict[str, dict[str, int]]] = {}
    rows = rejects.where(F.col("run_id").isin(ids)).groupBy("run_id", "stage", "reason").count()
    for r in rows.collect():
        found.setdefault(r["run_id"], {}).setdefault(r["stage"], {})[r["reason"]] = int(r["count"])
    return {
        night: {stage: dict(sorted(stages[stage].items(), key=lambda item: (-item[1], item[0])))
                for stage in sorted(stages, key=stage_order)}
        for night, stages in found.items()
    }


def _executions(executions: DataFrame | None, ids: list[str]) -> dict[str, tuple[int, int]]:
    """night -> (executions, passed) of the verdicts that night's execute wrote."""
    if executions is None or not {"run_id", "passed"} <= set(executions.columns):
        return {}
    counted = (
        executions.where(F.col("run_id").isin(ids))
        .groupBy("run_id")
        .agg(F.count(F.lit(1)).alias("total"),
             F.sum(F.coalesce(F.col("passed").cast("long"), F.lit(0))).alias("passed"))
    )
    return {r["run_id"]: (int(r["total"]), int(r["passed"])) for r in counted.collect()}


# --- plain Python: per-night numbers -------------------------------------------------

def _stage_entry(row: Row) -> dict[str, Any]:
    seconds = row["seconds"]
    whole = {name: None if row[name] is None else int(row[name])
             for name in ("rows_in", "rows_out", "rows_rejected", "rows_failed", "tokens_in", "tokens_out")}
    return {
        "stage": row["stage"], "status": row["status"],
        **whole,
        "seconds": None if seconds is None else round(seconds, 1),
        "yield": _ratio(whole["rows_out"], whole["rows_in"]),
        "rows_per_s": _ratio(whole["rows_in"], seconds, 2),
        # Only the generation stages make tokens; elsewhere the rate would be a 0 to ignore.
        "tokens_out_per_s": _ratio(whole["tokens_out"], seconds, 1) if whole["tokens_out"] else None,
        "gpu_seconds": None if row["gpu_seconds"] is None else round(float(row["gpu_seconds"]), 1),
        "cost": None if row["cost"] is None else round(float(row["cost"]), 6),
    }


def _night_status(stages: list[dict[str, Any]]) -> str:
    statuses = {s["status"] for s in stages}
    for worst in ("failed", "running"):
        if worst in statuses:
            return worst
    return "succeeded"


def _night(run_id: str, first: datetime, stages: list[dict[str, Any]],
           rejects: dict[str, dict[str, int]], executed: tuple[int, int] | None) -> dict[str, Any]:
    cost = _total(s["cost"] for s in stages)
    gpu_seconds = _total(s["gpu_seconds"] for s in stages)
    select = next((s for s in stages if s["stage"] == Source.SELECT.value), None)
    kept = None if select is None else select["rows_out"]
    total, passed = executed if executed else (0, 0)
    return {
        "run_id": run_id, "started_at": first.isoformat(sep=" ", timespec="seconds"),
        "label": _label(first), "status": _night_status(stages),
        "stages": stages,
        "rejects": rejects,
        "executions": total, "passed": passed, "pass_rate": _ratio(passed, total),
        "tokens_in": _total(s["tokens_in"] for s in stages),
        "tokens_out": _total(s["tokens_out"] for s in stages),
        "gpu_hours": None if gpu_seconds is None else round(gpu_seconds / 3600, 4),
        "cost": None if cost is None else round(cost, 6),
        "sft_kept": kept,
        # Unknown (blank) without a price or without a select stage that kept something.
        "cost_per_pair": _ratio(cost, kept, 6),
    }


def regressions(nights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nights whose yield of a stage, or whose execute pass rate, collapsed.

    The rule, simple enough to check by hand: a night regresses on a metric when the
    median of that metric over the nights before it (in the window, where it was known)
    is above 0, and the night's value is at most REGRESSION_SHARE (60%) of that median (a
    fall of 40% or more, so a halved rate counts with room for noise). The median, not the
    mean or the last night, so one odd night before does not move the yardstick.
    """
    found: list[dict[str, Any]] = []
    history: dict[tuple[str, str], list[float]] = {}
    for night in nights:
        values = [(("yield", s["stage"]), s["yield"]) for s in night["stages"]]
        values.append((("pass_rate", Source.EXECUTE.value), night["pass_rate"]))
        for key, value in values:
            if value is None:
                continue
            before = history.setdefault(key, [])
            baseline = statistics.median(before) if before else None
            if baseline and value <= REGRESSION_SHARE * baseline:
                found.append({"run_id": night["run_id"], "metric": key[0], "stage": key[1],
                              "value": value, "baseline": round(baseline, 4)})
            before.append(value)
    return found


def collect_trends(tables: dict[str, DataFrame | None], run_id: str | None = None,
                   nights: int = NIGHTS) -> dict[str, Any]:
    """The trends part of the report's summary (JSON-ready): `nights` oldest first."""
    runs = tables.get("runs")
    chosen = _night_ids(runs, run_id, nights) if runs is not None else []
    ids = [night for night, _ in chosen]
    per_stage: dict[str, list[dict[str, Any]]] = {}
    if runs is not None and ids:
        for row in _stage_rows(runs, ids):
            per_stage.setdefault(row["run_id"], []).append(_stage_entry(row))
    mix = _reject_mix(tables.get("rejects"), ids) if ids else {}
    executed = _executions(tables.get("executions"), ids) if ids else {}
    listed = [
        _night(night, first, sorted(per_stage.get(night, []), key=lambda s: stage_order(s["stage"])),
               mix.get(night, {}), executed.get(night))
        for night, first in chosen
    ]
    return {"nights_requested": nights, "nights": listed, "regressions": regressions(listed),
            "regression_share": REGRESSION_SHARE}
