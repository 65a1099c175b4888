"""typecheck: pyright over every decontaminated function; any error drops it.

Each task gathers its rows into batches of `TypecheckConfig.batch_size` files and runs one
pyright process per batch (see udfs/typecheck.py for why, and for the split-and-retry
that isolates a function that crashes or hangs pyright).
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
from udfs.typecheck import (
    RULE_CRASH,
    RULE_TIMEOUT,
    PyrightOptions,
    PyrightUnavailable,
    Verdict,
    check_stream,
    ensure_pyright,
    function_source,
)

NAME = Source.TYPECHECK
KEY = "function_id"

OUTCOME_SCHEMA = outcome_schema(TYPECHECK)


def outcome(function_id: str, verdict: Verdict, version: str) -> dict[str, Any]:
    failed = not verdict.passed
    return {
        "function_id": function_id, "passed": verdict.passed, "rule": verdict.rule,
        "message": verdict.message, "line": verdict.line, "pyright_version": version,
        SOURCE_KEY: function_id, ITEM_ID: function_id,
        # A function pyright cannot finish on is not a type error: keep the two apart.
        REJECT_REASON: (Reason(verdict.rule) if verdict.rule in (RULE_CRASH, RULE_TIMEOUT) else Reason.TYPE_ERROR)
        if failed else None,
        REJECT_DETAIL: f"{verdict.rule}: {verdict.message}"[:1000] if failed else None,
    }


def pyright_options(cfg: TypecheckConfig) -> PyrightOptions:
    """What each batch's pyrightconfig.json says, from the typecheck section."""
    return PyrightOptions(cfg.python_version, cfg.type_checking_mode, cfg.report_missing_imports)


@dataclass(frozen=True)
class TypecheckSettings:
    cfg: TypecheckConfig
    pyright_version: str
    partitions: int  # tasks at once: one pyright process each


def settings(run: StageRun[TypecheckSettings]) -> TypecheckSettings:
    try:
        version = ensure_pyright()  # a missing node/pyright fails here, not in a task
    except PyrightUnavailable as exc:
        raise StageError(f"{NAME}: {exc}") from None
    return TypecheckSettings(run.cfg.typecheck, version, run.tasks)


def transform(functions: DataFrame, settings: TypecheckSettings) -> DataFrame:
    cfg, version, partitions = settings.cfg, settings.pyright_version, settings.partitions

    def check_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pairs = (
            (fid, function_source(imports, code))
            for batch in batches
            for fid, imports, code in zip(batch["function_id"], batch["imports"], batch["code"], strict=True)
        )
        rows: list[dict[str, Any]] = []
        options = pyright_options(cfg)
        for function_id, verdict in check_stream(pairs, cfg.batch_size, cfg.timeout_seconds, options):
            rows.append(outcome(function_id, verdict, version))
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
)
