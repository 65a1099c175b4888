"""The stage contract: a stage is a declared object, so a reader who knows one knows all,
and the runner, the DAG registry, `status`, `report` and the CLI read declarations
instead of guessing.

A `Stage` says what it reads, what it writes and how; `jobs.core.runner.run` does the rest
the same way for every stage (pending input, chunks, outcome rows, idempotent commits,
progress last, a `runs` row with counts). A `Step` is a DAG step that writes files, not
a table (export).

    settings(run) -> S                     built once on the driver at stage start from
                                           the StageRun; may read side tables (lazy
                                           DataFrames), load an index or prompts, and raise
                                           StageError when the stage cannot start (no
                                           engine, no sandbox)
    transform(df, settings) -> DataFrame   pure: no I/O, no Context, only its settings
    resolve(df, settings) -> DataFrame     optional: the transform's rows, finished against
                                           what earlier chunks committed
    hook(run)                              a side-table write before or after the chunks

The runner builds one `StageRun` per stage run and hands the same object to settings and
hooks: what the runner knows (the pending input, the cluster's task count, the counts so
far) is read from it, never computed again by a stage.

Outcome rows (what a transform returns) are defined in schemas/outcome.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from udfs.accounting import Usage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from jobs.core.config import PipelineConfig
    from jobs.core.context import Context
    from schemas import TableSpec
    from udfs.progress import ProgressTarget

S = TypeVar("S")


@dataclass
class StageSummary:
    """What one stage run did: its `runs` row's counts and the CLI's log line."""

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    rows_failed: int = 0
    seconds: float = 0.0
    chunks: int = 0
    usage: Usage = field(default_factory=Usage)  # tokens, engine/GPU/CPU seconds (udfs/accounting.py)


_UNSET: Any = object()


@dataclass
class StageRun(Generic[S]):
    """One run of one stage, built once by the runner.

    `pending`: the input rows whose key is not in `progress` (a lazy DataFrame, planned on
    first use: reading a stage's input may fail, and that belongs to the recorded run; the
    runner stages it once before the chunks, and `summary.rows_in` is its count from then
    on). `tasks`: how many tasks the cluster runs at once, what a stage spreads its work over.
    """

    ctx: Context
    stage: str
    plan_pending: Callable[[], DataFrame] = field(repr=False)
    tasks: int
    summary: StageSummary
    # Where its tasks send live progress (jobs/core/progress.py); None: nowhere.
    progress: ProgressTarget | None = None
    _settings: Any = field(default=_UNSET, repr=False)
    _pending: DataFrame | None = field(default=None, repr=False)

    @property
    def pending(self) -> DataFrame:
        if self._pending is None:
            self._pending = self.plan_pending()
        return self._pending

    @property
    def settings(self) -> S:
        """The stage's settings, built by `Stage.settings` from this run (hooks read them)."""
        if self._settings is _UNSET:
            raise RuntimeError(f"{self.stage}: settings read before the runner built them")
        return self._settings

    @property
    def cfg(self) -> PipelineConfig:
        return self.ctx.cfg


# A side-table write inside the stage's recorded block, so it is part of its `runs` row.
Hook = Callable[["StageRun[Any]"], None]


@dataclass(frozen=True)
class SortKey:
    """One column of an input order: by `column`, descending or not; nulls always last."""

    column: str
    descending: bool = False


@dataclass(frozen=True)
class Chunking:
    """How the pending input is cut into separately committed chunks.

    `rows(cfg)`: rows per chunk (None: run.chunk_rows). `whole`: one chunk whatever its
    size, for global stages whose result depends on all rows at once (dedup, select).
    `order`: chunks are consecutive ranges of the input in this order (else hash cuts of
    the key), for a stage whose result depends on which of two rows comes first: when
    the first row by this order wins within a chunk and a row already committed wins
    over a later chunk's, the winner is the same at any chunk size (extract: the most
    starred copy of a function).
    """

    rows: Callable[[PipelineConfig], int | None] = lambda cfg: None
    whole: bool = False
    order: tuple[SortKey, ...] = ()


BY_RUN_CHUNK_ROWS = Chunking()
WHOLE_INPUT = Chunking(whole=True)


@dataclass(frozen=True)
class Stage(Generic[S]):
    name: str
    output: TableSpec  # the table it writes (schemas/)
    key: str  # the input key recorded in `progress`
    read: Callable[[Context], DataFrame]  # its whole input; the runner keeps what is pending
    settings: Callable[[StageRun[S]], S]
    # The chunk's work. It runs while earlier chunks commit (jobs/core/runner.py, AHEAD),
    # so it must not read what they commit; what does (extract: a copy already kept in
    # `functions` makes an exact duplicate) goes in `resolve`, which the runner applies
    # to the staged transform output when the chunk's turn to commit comes.
    transform: Callable[[DataFrame, S], DataFrame]
    resolve: Callable[[DataFrame, S], DataFrame] | None = None
    chunking: Chunking = BY_RUN_CHUNK_ROWS
    # True: a row per input in `output`, rejected ones included (a verdict table);
    # False: only kept rows (rejects go to `rejects` either way).
    verdicts: bool = False
    before: tuple[Hook, ...] = ()  # side tables written before the chunks (dedup: minhashes)
    after: tuple[Hook, ...] = ()  # ... and after them (dedup: cluster sizes)
    # On a run with nothing committed yet, an empty input is a wrong path, not a quiet
    # night: the one-line error for it (extract), raised once the runner has counted it.
    empty_input_error: Callable[[PipelineConfig], str] | None = None
    needs_engine: bool = False  # calls the model: needs `llm.engine`
    # What its tasks count for live progress inside a chunk ("tokens", "programs"); None:
    # they report none, and only the per-chunk lines are logged.
    progress_unit: str | None = None
    # True when a chunk can never write a key that is already in the output or in
    # `rejects` unless an earlier run crashed: every key is the input key itself
    # (decontaminate, typecheck), or the transform turns keys already in the output into
    # rejects (extract: a function_id already in `functions` is an exact_duplicate).
    # After a clean run the runner then appends chunks instead of MERGEing them (a MERGE
    # reads all of the target's keys, per chunk).
    appends_after_clean_run: bool = False
    # Its whole input's key column read from key columns only, where `read` must open
    # content to make a key (extract); None: `read` selected down to `key`, which Spark
    # prunes to the key and the columns its filters use. What `selfalign plan` counts.
    keys: Callable[[Context], DataFrame] | None = None
    # False: its transform never fails transiently (no `retry_error` rows), so the runner
    # does not read `errors` for the retry cap (run.max_attempts) at every chunk.
    retries: bool = True

    def input_keys(self, ctx: Context) -> DataFrame:
        return self.keys(ctx) if self.keys is not None else self.read(ctx).select(self.key)


@dataclass(frozen=True)
class Step:
    """A DAG step that writes files, not a table; recorded in `runs` like a stage."""

    name: str
    action: Callable[[Context, StageSummary], None]
    needs_engine: bool = False
