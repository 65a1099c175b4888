"""decontaminate: drop functions that leak benchmark solutions, prompts or docstrings.

The benchmark index (token n-gram hashes plus normalized texts, ~2 MB) is built once
on the driver and shipped to executors with the UDF; each executor matches its rows
locally, so millions of seeds cost one pass and no cross join.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.runner import (
    ITEM_ID,
    REJECT_DETAIL,
    REJECT_REASON,
    SOURCE_KEY,
    StageError,
    StageSummary,
    outcome_frame,
    outcome_schema,
    pending_input,
    run_stage,
)
from schemas import DECONTAMINATION, FUNCTIONS
from udfs.benchmarks import BenchmarkMissing
from udfs.decontam import BenchmarkIndex, build_index_from_config, find_contamination

STAGE = "decontaminate"
KEY = "function_id"

OUTCOME_SCHEMA = outcome_schema(DECONTAMINATION)


def verdict(function_id: str, code: str | None, index: BenchmarkIndex) -> dict[str, Any]:
    """One outcome row (plain Python)."""
    match = find_contamination(code, index)
    row: dict[str, Any] = {
        "function_id": function_id, "contaminated": match is not None,
        "benchmark": None, "task_id": None, "rule": None, "matched_text": None,
        SOURCE_KEY: function_id, ITEM_ID: function_id, REJECT_REASON: None, REJECT_DETAIL: None,
    }
    if match is not None:
        row.update(benchmark=match.benchmark, task_id=match.task_id, rule=match.rule,
                   matched_text=match.matched_text)
        row[REJECT_REASON] = "benchmark_contamination"
        row[REJECT_DETAIL] = f"{match.benchmark} {match.task_id} ({match.rule})"
    return row


def transform(functions: DataFrame, index: BenchmarkIndex) -> DataFrame:
    # The index rides in the UDF's closure: PySpark ships a pickled command over 1 MB as a
    # broadcast, and unlike SparkContext.broadcast this also works on Spark Connect.
    def match_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = [verdict(fid, code, index) for fid, code in zip(batch["function_id"], batch["code"], strict=True)]
            yield outcome_frame(rows, OUTCOME_SCHEMA)

    return functions.select("function_id", "code").mapInPandas(match_batches, schema=OUTCOME_SCHEMA)


def load_index(ctx: Context) -> BenchmarkIndex:
    try:
        return build_index_from_config(ctx.cfg.decontaminate)
    except BenchmarkMissing as exc:
        raise StageError(f"decontaminate: {exc}") from None


def pending(ctx: Context) -> DataFrame:
    return pending_input(ctx, STAGE, ctx.lake.read(FUNCTIONS).select(KEY, "code"), KEY)


def run(ctx: Context) -> StageSummary:
    index = load_index(ctx)  # fail at stage start on a missing benchmark file
    return run_stage(
        ctx, STAGE, DECONTAMINATION, pending(ctx), KEY,
        transform=lambda part: transform(part, index), verdicts=True,
    )


def clean_functions(ctx: Context) -> DataFrame:
    """Functions that passed decontamination: the next stage's input."""
    clean = ctx.lake.read(DECONTAMINATION).where(~F.col("contaminated")).select(KEY)
    return ctx.lake.read(FUNCTIONS).join(clean, on=KEY, how="inner")
