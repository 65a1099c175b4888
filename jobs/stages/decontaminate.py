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

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.stage import Stage, StageRun
from jobs.tools.benchmarks import load_or_fetch
from schemas import DECONTAMINATION, FUNCTIONS
from schemas.outcome import (
    ITEM_ID,
    REJECT_DETAIL,
    REJECT_REASON,
    SOURCE_KEY,
    Reason,
    Source,
    outcome_frame,
    outcome_schema,
)
from udfs.benchmarks import BenchmarkMissing
from udfs.decontam import (
    BenchmarkIndex,
    DecontamSettings,
    build_index_from_config,
    find_contamination,
)

NAME = Source.DECONTAMINATE
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
        row[REJECT_REASON] = Reason.BENCHMARK_CONTAMINATION
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


def load_index(run: StageRun[BenchmarkIndex]) -> BenchmarkIndex:
    settings = DecontamSettings.from_settings(run.cfg.decontaminate)
    try:
        return load_or_fetch(lambda: build_index_from_config(settings), settings.benchmarks_dir,
                             "benchmarks.dir")
    except BenchmarkMissing as exc:
        raise StageError(f"{NAME}: {exc}") from None


def read(ctx: Context) -> DataFrame:
    return ctx.lake.read(FUNCTIONS).select(KEY, "code")


# The settings are the index itself: built at stage start, so a missing benchmark file
# stops the stage before any task runs.
STAGE = Stage(
    name=NAME, output=DECONTAMINATION, key=KEY, read=read, settings=load_index,
    transform=transform, verdicts=True, appends_after_clean_run=True,  # a verdict per function_id
    retries=False,
)
