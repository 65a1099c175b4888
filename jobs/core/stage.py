"""The stage contract: a stage is a declared object, so a reader who knows one knows all,
and the runner, the DAG registry, `status`, `report` and the CLI read declarations
instead of guessing.

A `Stage` says what it reads, what it writes and how; `jobs.core.runner.run` does the rest
the same way for every stage (pending input, chunks, outcome rows, idempotent commits,
progress last, a `runs` row with counts). A `Step` is a DAG step that writes files, not
a table (export).

    transform(df, settings) -> DataFrame   pure: no I/O, no Context, only its settings
    settings(ctx) -> S                     built once on the driver at stage start; may
                                           read side tables (lazy DataFrames), load an
                                           index or prompts, and raise StageError when
                                           the stage cannot start (no engine, no sandbox)

Outcome rows (what a transform returns) are defined in schemas/outcome.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from jobs.core.config import PipelineConfig
    from jobs.core.context import Context
    from jobs.core.runner import StageSummary
    from schemas import TableSpec

S = TypeVar("S")

# A side-table write inside the stage's recorded block, so it is part of its `runs` row.
Hook = Callable[["Context", Any, "StageSummary"], None]


@dataclass(frozen=True)
class Chunking:
    """How the pending input is cut into separately committed chunks.

    `rows(cfg)`: rows per chunk (None: run.chunk_rows). `whole`: one chunk whatever its
    size, for global stages whose result depends on all rows at once (dedup, select).
    """

    rows: Callable[[PipelineConfig], int | None] = lambda cfg: None
    whole: bool = False


BY_RUN_CHUNK_ROWS = Chunking()
WHOLE_INPUT = Chunking(whole=True)


@dataclass(frozen=True)
class Stage(Generic[S]):
    name: str
    output: TableSpec  # the table it writes (schemas/)
    key: str  # the input key recorded in `progress`
    read: Callable[[Context], DataFrame]  # its whole input; the runner keeps what is pending
    settings: Callable[[Context], S]
    transform: Callable[[DataFrame, S], DataFrame]
    chunking: Chunking = BY_RUN_CHUNK_ROWS
    # True: a row per input in `output`, rejected ones included (a verdict table);
    # False: only kept rows (rejects go to `rejects` either way).
    verdicts: bool = False
    before: tuple[Hook, ...] = ()  # side tables written before the chunks (dedup: minhashes)
    after: tuple[Hook, ...] = ()  # ... and after them (dedup: cluster sizes)
    # False: with nothing pending the stage is one cheap check and records nothing. True
    # for a stage whose hooks must run every time (evaluate writes this run's figures).
    runs_when_idle: bool = False
    needs_engine: bool = False  # calls the model: needs `llm.engine`
    # True when a chunk can never write a key that is already in the output or in
    # `rejects` unless an earlier run crashed: every key is the input key itself
    # (decontaminate, typecheck), or the transform turns keys already in the output into
    # rejects (extract: a function_id already in `functions` is an exact_duplicate).
    # After a clean run the runner then appends chunks instead of MERGEing them (a MERGE
    # reads all of the target's keys, per chunk).
    appends_after_clean_run: bool = False


@dataclass(frozen=True)
class Step:
    """A DAG step that writes files, not a table; recorded in `runs` like a stage."""

    name: str
    action: Callable[[Context, StageSummary], None]
    needs_engine: bool = False
