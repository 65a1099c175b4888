"""typecheck: pyright (or `typecheck.checker`) over every decontaminated function; any error drops it.

Each task gathers its rows into batches of `TypecheckConfig.batch_size` files and runs one
checker process per batch (see udfs/typecheck.py for why, and for the split-and-retry
that isolates a function that crashes or hangs the checker).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.readers import DECONTAMINATED, functions_through
from jobs.core.sections import TypecheckConfig
from jobs.core.stage import Stage, StageRun
from schemas import TYPECHECK
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
from udfs.checkers import RULE_CRASH, RULE_TIMEOUT, CheckerUnavailable, CheckOptions, checker_named
from udfs.typecheck import Verdict, check_stream, function_source

NAME = Source.TYPECHECK
KEY = "function_id"

OUTCOME_SCHEMA = outcome_schema(TYPECHECK)


def outcome(function_id: str, verdict: Verdict, checker: str, version: str) -> dict[str, Any]:
    failed = not verdict.passed
    return {
        "function_id": function_id, "passed": verdict.passed, "rule": verdict.rule,
        "message": verdict.message, "line": verdict.line,
        # pyright_version holds the version of whichever checker gave the verdict.
        "checker": checker, "pyright_version": version,
        SOURCE_KEY: function_id, ITEM_ID: function_id,
        # A function the checker cannot finish on is not a type error: keep the two apart.
        REJECT_REASON: (Reason(verdict.rule) if verdict.rule in (RULE_CRASH, RULE_TIMEOUT) else Reason.TYPE_ERROR)
        if failed else None,
        REJECT_DETAIL: f"{verdict.rule}: {verdict.message}"[:1000] if failed else None,
    }


def check_options(cfg: TypecheckConfig) -> CheckOptions:
    """The checker and what each batch's config file says, from the typecheck section."""
    return CheckOptions(cfg.python_version, cfg.type_checking_mode, cfg.report_missing_imports, cfg.checker)


@dataclass(frozen=True)
class TypecheckSettings:
    cfg: TypecheckConfig
    checker_version: str  # of cfg.checker
    partitions: int  # tasks at once: one checker process each


def settings(run: StageRun[TypecheckSettings]) -> TypecheckSettings:
    cfg = run.cfg.typecheck
    try:
        version = checker_named(cfg.checker).version()  # a missing tool fails here, not in a task
    except CheckerUnavailable as exc:
        raise StageError(f"{NAME}: {exc}") from None
    return TypecheckSettings(cfg, version, run.tasks)


def transform(functions: DataFrame, settings: TypecheckSettings) -> DataFrame:
    cfg, version, partitions = settings.cfg, settings.checker_version, settings.partitions

    def check_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pairs = (
            (fid, function_source(imports, code))
            for batch in batches
            for fid, imports, code in zip(batch["function_id"], batch["imports"], batch["code"], strict=True)
        )
        rows: list[dict[str, Any]] = []
        options = check_options(cfg)
        for function_id, verdict in check_stream(pairs, cfg.batch_size, cfg.timeout_seconds, options):
            rows.append(outcome(function_id, verdict, cfg.checker, version))
            if len(rows) >= cfg.batch_size:
                yield outcome_frame(rows, OUTCOME_SCHEMA)
                rows = []
        if rows:
            yield outcome_frame(rows, OUTCOME_SCHEMA)

    spread = functions.select("function_id", "imports", "code").repartition(partitions, "function_id")
    return spread.mapInPandas(check_batches, schema=OUTCOME_SCHEMA)


def read(ctx: Context) -> DataFrame:
    return functions_through(ctx, DECONTAMINATED).select(KEY, "imports", "code")


STAGE = Stage(
    name=NAME, output=TYPECHECK, key=KEY, read=read, settings=settings, transform=transform,
    verdicts=True, appends_after_clean_run=True,  # a verdict per function_id, the input key
    retries=False,  # a checker that fails or times out gives a verdict, never a retry
)
