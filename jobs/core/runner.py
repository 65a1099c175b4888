"""Runs any declared stage (jobs/core/stage.py) the same way.

`run(stage, ctx)`: build the stage's `StageRun` (jobs/core/stage.py) and its settings (a
stage that cannot start says so here, before anything is recorded), then inside one
recorded block (a `runs` row: running,
then succeeded or failed with counts) run its `before` hooks, read its pending input
(keys not yet in `progress`, staged once and counted on the way), cut it into chunks,
and for each chunk write the transform's outcome rows (schemas/outcome.py) to a scratch
copy once (so the transform, which may be expensive, runs exactly once per chunk),
merge kept rows into the output table and rejects into `rejects` (insert-only MERGEs,
or appends where that is safe), log transient failures in `errors`, and append the
chunk's input keys to `progress` last; then its `after` hooks. Progress is written
last: a crash anywhere before it only means redoing idempotent merges on the next run,
never a lost or duplicated row.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.ordered_chunks import range_chunk
from jobs.core.progress import ProgressListener, duration, live_progress
from jobs.core.stage import Stage, StageRun, StageSummary, Step
from schemas import ERRORS, PROGRESS, REJECTS, RUNS, TableSpec
from schemas.outcome import (
    ITEM_ID,
    REJECT_DETAIL,
    REJECT_REASON,
    RETRY_ERROR,
    SOURCE_KEY,
    USAGE,
    Reason,
)
from udfs.accounting import Prices, Usage

log = logging.getLogger("selfalign")


def pending_input(ctx: Context, stage: str, inputs: DataFrame, key: str) -> DataFrame:
    """Input rows whose key this stage has not committed yet."""
    done = (
        ctx.lake.read(PROGRESS)
        .where(F.col("stage") == F.lit(stage))
        .select(F.col("input_key").alias(key))
    )
    return inputs.join(done, on=key, how="left_anti")


def _describe_job(ctx: Context, text: str) -> None:
    """Label the Spark jobs this thread submits from now on (the Spark UI, event logs).
    Every phase of a stage run sets its own: a label outlives the phase that set it."""
    # Spark Connect has no SparkContext; job descriptions are cosmetic there.
    with contextlib.suppress(Exception):
        ctx.spark.sparkContext.setJobDescription(text)


# Scheduler pools of a chunked run (spark.scheduler.mode=FAIR): the commit's few short
# jobs take the next free core from the transforms of the chunks running ahead instead
# of queuing behind all their tasks, so cores stay busy while a chunk commits. Under
# FIFO, pools are ignored and nothing changes.
COMMIT_POOL = "selfalign-commit"
TRANSFORM_POOL = "selfalign-transform"


def _use_pool(ctx: Context, pool: str | None) -> None:
    """Put the Spark jobs this thread submits from now on in a scheduler pool (None: the
    default pool)."""
    with contextlib.suppress(Exception):  # Spark Connect: no SparkContext, no pools
        ctx.spark.sparkContext.setLocalProperty("spark.scheduler.pool", pool)  # type: ignore[arg-type]


def _record_run(ctx: Context, stage: str, status: str, started: datetime,
                summary: StageSummary | None, message: str | None = None) -> None:
    ended = None if status == "running" else datetime.now(timezone.utc)
    usage = summary.usage if summary else None
    row = (
        # str(): the text of a Source name (Spark 4.0 pickles driver rows, and its JVM
        # unpickler knows no Python enum).
        ctx.run_id, str(stage), status, started, ended,
        summary.rows_in if summary else None,
        summary.rows_out if summary else None,
        summary.rows_rejected if summary else None,
        ctx.cfg.fingerprint(), message,
        summary.rows_failed if summary else None,
        summary.chunks if summary else None,
        *((usage.tokens_in, usage.tokens_out, usage.engine_seconds, usage.gpu_seconds,
           usage.cpu_seconds, usage.cost(Prices.from_settings(ctx.cfg.cost)))
          if usage else (None,) * 6),
    )
    ctx.lake.append(RUNS, ctx.spark.createDataFrame([row], RUNS.schema))


def write_scratch(rows: DataFrame, path: str, partition_by: str | None = None) -> None:
    """Replace a scratch copy under {lake.root}/_staging. Plain parquet, not Delta: a
    scratch copy needs no log or commit, and the runner rebuilds it every time."""
    writer = rows.write.mode("overwrite")
    if partition_by is not None:
        writer = writer.partitionBy(partition_by)
    writer.parquet(path)


def _insert(ctx: Context, spec: TableSpec, rows: DataFrame, append: bool) -> None:
    # A MERGE reads the target's keys, the whole ever-growing table, once per chunk; an
    # append reads nothing. Appending is safe when no earlier run can have left rows of
    # these (pending) keys: see `_last_run_was_clean`.
    if append:
        ctx.lake.append(spec, rows)
    else:
        ctx.lake.insert_new(spec, rows)


def _last_run_was_clean(ctx: Context, stage: str) -> bool:
    """True when the stage never ran or its last run succeeded: then every row it wrote
    has its key in `progress`, so rows of pending keys exist nowhere and chunks may be
    appended. After a crash (`running` left behind) or a failure, the next run MERGEs,
    which also makes it the run that cleans up what the crashed one half-wrote."""
    last = (ctx.lake.read(RUNS).where(F.col("stage") == F.lit(stage))
            # A run's rows share started_at; its end row (ended_at set) comes first.
            .orderBy(F.col("started_at").desc(), F.col("ended_at").desc_nulls_last())
            .select("status").take(1))
    return not last or last[0]["status"] == "succeeded"


def _give_up_after_retries(ctx: Context, stage: str, outcomes: DataFrame) -> DataFrame:
    """A row that failed transiently in run.max_attempts runs becomes a reject.

    Without a cap, an item that always fails (a prompt the endpoint always times out on,
    a program that always breaks the sandbox) would be retried by every nightly run forever.
    """
    earlier = (ctx.lake.read(ERRORS).where(F.col("stage") == stage)
               .groupBy(F.col("item_id").alias(ITEM_ID)).agg(F.count_distinct("run_id").alias("_failed_runs")))
    attempts = F.coalesce(F.col("_failed_runs"), F.lit(0)) + 1
    give_up = F.col(RETRY_ERROR).isNotNull() & (attempts >= ctx.cfg.run.max_attempts)
    joined = outcomes.join(F.broadcast(earlier), on=ITEM_ID, how="left")
    return joined.select(
        *[c for c in outcomes.columns if c not in (REJECT_REASON, REJECT_DETAIL, RETRY_ERROR)],
        F.when(give_up, F.lit(Reason.GAVE_UP_AFTER_RETRIES.value))
        .otherwise(F.col(REJECT_REASON)).alias(REJECT_REASON),
        F.when(give_up, F.concat(F.lit("failed in "), attempts.cast("string"),
                                 F.lit(" runs; last error: "), F.col(RETRY_ERROR)))
        .otherwise(F.col(REJECT_DETAIL)).alias(REJECT_DETAIL),
        F.when(give_up, F.lit(None).cast("string")).otherwise(F.col(RETRY_ERROR)).alias(RETRY_ERROR),
    ).select(*outcomes.columns)


@dataclass(frozen=True)
class ChunkCounts:
    """A chunk's staged outcome rows: kept, rejected, failed, and what its tasks used."""

    kept: int
    rejected: int
    failed: int
    usage: Usage


def stage_outcomes(ctx: Context, stage: str, outcomes: DataFrame, path: str, retries: bool = True) -> ChunkCounts:
    """Write a chunk's outcome rows to a scratch copy once (so the transform, which may be
    expensive, runs exactly once), counting them on the way. `retries`: the stage can
    fail transiently (`Stage.retries`), so the retry cap applies."""
    if RETRY_ERROR not in outcomes.columns:
        outcomes = outcomes.withColumn(RETRY_ERROR, F.lit(None).cast("string"))
    if retries:
        outcomes = _give_up_after_retries(ctx, stage, outcomes)
    stats = Observation(f"{stage}_outcomes")
    is_retry = F.col(RETRY_ERROR).isNotNull()
    is_reject = F.col(REJECT_REASON).isNotNull() & ~is_retry
    observed = outcomes.observe(
        stats,
        F.sum(F.when(is_reject | is_retry, 0).otherwise(1)).alias("kept"),
        F.sum(F.when(is_reject, 1).otherwise(0)).alias("rejected"),
        F.sum(F.when(is_retry, 1).otherwise(0)).alias("failed"),
        # What the tasks used (udfs/accounting.py), summed in the same pass: no extra job.
        *(F.sum(name).alias(name) for name in USAGE if name in outcomes.columns),
    )
    write_scratch(observed, path)
    metrics = stats.get
    kept, rejected, failed = (int(metrics.get(name) or 0) for name in ("kept", "rejected", "failed"))
    return ChunkCounts(kept, rejected, failed, Usage.from_columns(metrics))


def _commit_chunk(ctx: Context, stage: str, output: TableSpec, staged: DataFrame, counts: ChunkCounts,
                  verdicts: bool, append: bool) -> None:
    """Merge a chunk's staged outcome rows: kept rows into the output, rejects into
    `rejects`, transient failures into `errors`, then its input keys into `progress`."""
    is_retry = F.col(RETRY_ERROR).isNotNull()
    is_reject = F.col(REJECT_REASON).isNotNull() & ~is_retry
    # Every Delta commit costs seconds locally and a scan of the target's keys on a
    # cluster, so a write with nothing to write is skipped.
    # A verdict table (decontamination, typecheck, ...) records every row it examined.
    if counts.kept or (verdicts and counts.rejected):
        kept = staged.where(~is_retry) if verdicts else staged.where(~is_reject & ~is_retry)
        # A reject about the input as a whole (e.g. a failed generation) has no output key.
        for column in output.key:
            kept = kept.where(F.col(column).isNotNull())
        if "run_id" in output.columns:
            kept = kept.withColumn("run_id", F.lit(ctx.run_id))
        _insert(ctx, output, kept, append)

    if counts.rejected:
        rejects = staged.where(is_reject).select(
            F.col(ITEM_ID).alias("item_id"),
            F.lit(stage).alias("stage"),
            F.col(REJECT_REASON).alias("reason"),
            F.col(REJECT_DETAIL).alias("detail"),
            F.col(SOURCE_KEY).alias("source_key"),
            F.lit(ctx.run_id).alias("run_id"),
        ).dropDuplicates(["item_id"])  # an input file listed twice yields the same rejects twice
        _insert(ctx, REJECTS, rejects, append)

    committed = staged.select(SOURCE_KEY).distinct()
    if counts.failed:
        failures = staged.where(is_retry)
        ctx.lake.append(ERRORS, failures.select(
            F.lit(stage).alias("stage"),
            F.col(ITEM_ID).alias("item_id"),
            F.col(SOURCE_KEY).alias("source_key"),
            F.col(RETRY_ERROR).alias("error"),
            F.lit(ctx.run_id).alias("run_id"),
        ))
        # Keys with a transient failure stay pending: the next run retries them.
        committed = committed.join(failures.select(SOURCE_KEY).distinct(), on=SOURCE_KEY, how="left_anti")
    # An append, not a MERGE: these keys came from `pending_input`, which excludes every
    # key already in `progress`, and chunks are disjoint, so none can be there already.
    # (A MERGE would scan the whole, ever-growing progress table once per chunk.)
    if counts.kept or counts.rejected:  # otherwise every row is a retry: nothing is done
        ctx.lake.append(PROGRESS, committed.select(
            F.lit(stage).alias("stage"),
            F.col(SOURCE_KEY).alias("input_key"),
            F.lit(ctx.run_id).alias("run_id"),
        ))


@contextmanager
def _recorded(ctx: Context, summary: StageSummary) -> Iterator[StageSummary]:
    """`runs` rows around a stage: running at the start, then succeeded or failed with
    counts and usage."""
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    stage = summary.stage
    _record_run(ctx, stage, "running", started, None)
    try:
        yield summary
    except Exception as exc:
        summary.seconds = time.monotonic() - clock
        _record_run(ctx, stage, "failed", started, summary, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    summary.seconds = time.monotonic() - clock
    _record_run(ctx, stage, "succeeded", started, summary)


def pending_of(stage: Stage[Any], ctx: Context) -> DataFrame:
    """The stage's input rows whose key it has not committed yet."""
    return pending_input(ctx, stage.name, stage.read(ctx), stage.key)


def pending_keys_of(stage: Stage[Any], ctx: Context) -> DataFrame:
    """The stage's pending input keys, read from key columns only: what `status` and
    `plan` count."""
    return pending_input(ctx, stage.name, stage.input_keys(ctx), stage.key)


def run(stage: Stage[Any] | Step, ctx: Context) -> StageSummary:
    """Run one declared stage or step: see the module docstring."""
    ctx.memo.clear()
    if isinstance(stage, Step):
        return _run_step(stage, ctx)
    _describe_job(ctx, f"{stage.name}: pending check")
    if _nothing_pending(stage, ctx):
        # A nightly run over an unchanged input: one cheap check, no settings (an index,
        # prompts, an engine), no commits, no `runs` rows.
        log.info("[%s] nothing pending", stage.name)
        return StageSummary(stage.name)
    with live_progress(ctx, stage.name, stage.progress_unit) as listener:
        # Before the recorded block: a stage that cannot start records nothing.
        this_run = start(stage, ctx, listener)
        # Read before this run's `running` row is written.
        append = stage.appends_after_clean_run and _last_run_was_clean(ctx, stage.name)
        _describe_job(ctx, f"{stage.name}: start")
        with _recorded(ctx, this_run.summary):
            for hook in stage.before:
                hook(this_run)
            _run_chunks(stage, this_run, append, listener)
            _describe_job(ctx, f"{stage.name}: finish")
            for hook in stage.after:
                hook(this_run)
    summary = this_run.summary
    log.info("[%s] done in=%d out=%d rejected=%d %.1fs", stage.name, summary.rows_in,
             summary.rows_out, summary.rows_rejected, summary.seconds)
    if summary.rows_failed:
        log.warning("[%s] %d rows failed transiently (see `errors`); the next run retries them",
                    stage.name, summary.rows_failed)
    return summary


def start(stage: Stage[Any], ctx: Context, listener: ProgressListener | None = None) -> StageRun[Any]:
    """The stage's run: what the runner knows, then the settings the stage builds from it
    (raising StageError when the stage cannot start)."""
    this_run: StageRun[Any] = StageRun(ctx, stage.name, lambda: pending_of(stage, ctx),
                                       cluster_tasks(ctx), StageSummary(stage.name),
                                       listener.target if listener else None)
    this_run._settings = stage.settings(this_run)
    return this_run


def _nothing_pending(stage: Stage[Any], ctx: Context) -> bool:
    """True when every input key is in `progress`: a scan of the input's key column.

    A stage with no progress at all skips it (its first run, or an emptied lake): then
    everything is pending, and the staging pass counts it while reading the input once.
    """
    try:
        done = ctx.lake.read(PROGRESS).where(F.col("stage") == F.lit(stage.name))  # one partition
        if done.isEmpty():
            return False
        return pending_of(stage, ctx).isEmpty()
    except Exception:  # an unreadable input: the recorded run meets the error and logs it
        return False


def _run_step(step: Step, ctx: Context) -> StageSummary:
    _describe_job(ctx, step.name)
    with _recorded(ctx, StageSummary(step.name)) as summary:
        log.info("[%s] start run=%s", step.name, ctx.run_id)
        step.action(ctx, summary)
    log.info("[%s] done in=%d out=%d %.1fs", step.name, summary.rows_in, summary.rows_out,
             summary.seconds)
    return summary


def _chunk_count(stage: Stage[Any], ctx: Context, rows: int) -> int:
    if not rows:
        return 0
    if stage.chunking.whole:
        return 1
    limit = stage.chunking.rows(ctx.cfg) or ctx.cfg.run.chunk_rows
    return max(1, math.ceil(rows / limit))


CHUNK = "_chunk"
_SUB = "_sub"


@dataclass(frozen=True)
class StagedInput:
    """The pending input, written once (the only scan of the stage's input) and counted
    while it was written."""

    rows: DataFrame
    count: int


def stage_pending(stage: Stage[Any], ctx: Context, pending: DataFrame) -> StagedInput:
    """Write the pending rows to a scratch parquet copy, counting them on the way.

    Counting first and then reading the input again for the chunks would scan the input
    twice; the copy is read instead (by the chunking, or by the one chunk itself). Each
    run rebuilds it from `progress`, so a crash leaves nothing to clean up.
    """
    path = f"{ctx.lake.root}/_staging/{stage.name}-pending"
    counted = Observation(f"{stage.name}_pending")
    _describe_job(ctx, f"{stage.name}: stage pending input")
    write_scratch(pending.observe(counted, F.count(F.lit(1)).alias("rows")), path)
    return StagedInput(ctx.spark.read.parquet(path), int(counted.get.get("rows") or 0))


def cluster_tasks(ctx: Context) -> int:
    """How many tasks the cluster runs at once: its cores (Spark's default parallelism);
    on Spark Connect, which has no SparkContext, spark.sql.shuffle.partitions when it is
    a number (Databricks also allows `auto`), else 2."""
    with contextlib.suppress(Exception):
        return max(1, ctx.spark.sparkContext.defaultParallelism)
    with contextlib.suppress(Exception):
        return max(1, int(ctx.spark.conf.get("spark.sql.shuffle.partitions") or "2"))
    return 2


def chunk_inputs(stage: Stage[Any], ctx: Context, staged: DataFrame, chunks: int,
                 tasks: int | None = None, count: int | None = None) -> list[DataFrame]:
    """The input of each chunk, each reading only its share of the staged pending rows.

    Several chunks: the staged rows are rewritten once partitioned by chunk, and chunk i
    reads its own partition (pruned by the partition filter). Selecting chunk i with
    `pmod(hash(key), n) == i` over a parquet or Delta scan is not pushed down: every chunk
    would read everything again, n full reads for n chunks. Each chunk's partition holds
    about one file per core (shuffled on chunk and a sub-bucket of the key), so a chunk
    keeps the whole cluster busy and the file count is chunks x cores, not chunks x input
    tasks. A stage with a `Chunking.order` gets ranges of that order instead of hash cuts
    (jobs/core/ordered_chunks.py; `count`: the staged rows, which sizes the key sample).
    """
    if chunks <= 1:
        return [staged] if chunks else []
    path = f"{ctx.lake.root}/_staging/{stage.name}-chunks"
    tasks = tasks or cluster_tasks(ctx)
    _describe_job(ctx, f"{stage.name}: cut pending input in {chunks} chunks")
    order = stage.chunking.order
    chunk = (range_chunk(staged, count, order, chunks) if order
             else F.pmod(F.xxhash64(F.col(stage.key)), F.lit(chunks)).cast("int"))
    by_chunk = (
        staged.withColumn(CHUNK, chunk)
        .withColumn(_SUB, F.pmod(F.xxhash64(F.col(stage.key), F.lit("sub")), F.lit(tasks)))
        .repartition(chunks * tasks, CHUNK, _SUB)
        .drop(_SUB)
    )
    write_scratch(by_chunk, path, partition_by=CHUNK)
    parts = ctx.spark.read.parquet(path)
    return [parts.where(F.col(CHUNK) == F.lit(index)).drop(CHUNK) for index in range(chunks)]


# Transforms that run at once, ahead of the commits: while chunk i commits (a few short
# jobs, mostly driver time), the transforms of the chunks after it keep the cores busy;
# the commit's jobs take the next free core (COMMIT_POOL). A transform's staged rows
# wait in one of SLOTS scratch copies until their commit, so chunk k starts once chunk
# k - SLOTS has committed.
AHEAD = 2
SLOTS = AHEAD + 2


def _run_chunks(stage: Stage[Any], this_run: StageRun[Any], append: bool,
                listener: ProgressListener | None = None) -> None:
    """Transform the pending input chunk by chunk and commit each chunk idempotently, in
    order; up to AHEAD transforms run while chunks commit."""
    ctx, summary = this_run.ctx, this_run.summary
    staged = stage_pending(stage, ctx, this_run.pending)
    summary.rows_in = staged.count
    log.info("[%s] start run=%s pending=%d", stage.name, ctx.run_id, summary.rows_in)
    if not summary.rows_in and stage.empty_input_error is not None:
        # Only a run with nothing committed yet gets here with no rows (see _nothing_pending).
        raise StageError(stage.empty_input_error(ctx.cfg))
    chunks = _chunk_count(stage, ctx, summary.rows_in)
    parts = chunk_inputs(stage, ctx, staged.rows, chunks, this_run.tasks, summary.rows_in)
    clock = time.monotonic()
    if listener is not None:
        listener.stage_rows = summary.rows_in
    slots = _Slots()

    def scratch(index: int) -> str:
        return f"{ctx.lake.root}/_staging/{stage.name}/slot={index % SLOTS}"

    def transformed(index: int) -> ChunkCounts | None:
        """The chunk's transform, staged (and counted, unless the stage resolves it at
        commit). Runs in a worker thread: it must not depend on earlier chunks' commits."""
        if not slots.wait_for_slot(index):
            return None  # the run failed meanwhile
        _use_pool(ctx, TRANSFORM_POOL)
        _describe_job(ctx, f"{stage.name}: chunk {index + 1}/{chunks}")
        outcomes = stage.transform(parts[index], this_run.settings)
        if stage.resolve is not None:
            write_scratch(outcomes, f"{scratch(index)}-transformed")
            return None
        return stage_outcomes(ctx, stage.name, outcomes, scratch(index), stage.retries)

    _use_pool(ctx, COMMIT_POOL)
    # Every chunk is queued now; the pool's AHEAD threads take them in order.
    with ThreadPoolExecutor(max_workers=AHEAD, thread_name_prefix=f"{stage.name}-chunk") as pool:
        ahead = [pool.submit(transformed, index) for index in range(chunks)]
        try:
            for index in range(chunks):
                label = f"chunk {index + 1}/{chunks}"
                if listener is not None:
                    done = summary.rows_out + summary.rows_rejected + summary.rows_failed
                    listener.begin_chunk(index, chunks, math.ceil(summary.rows_in / chunks), done)
                counts = ahead[index].result()
                _describe_job(ctx, f"{stage.name}: commit {label}")
                if stage.resolve is not None:  # now, against what the earlier chunks committed
                    transformed_rows = ctx.spark.read.parquet(f"{scratch(index)}-transformed")
                    counts = stage_outcomes(ctx, stage.name, stage.resolve(transformed_rows, this_run.settings),
                                            scratch(index), stage.retries)
                assert counts is not None  # staged and counted by `transformed` otherwise
                _commit_chunk(ctx, stage.name, stage.output, ctx.spark.read.parquet(scratch(index)), counts,
                              stage.verdicts, append)
                slots.committed(index)
                summary.rows_out += counts.kept
                summary.rows_rejected += counts.rejected
                summary.rows_failed += counts.failed
                summary.usage.add(counts.usage)
                summary.chunks += 1
                if chunks > 1:
                    log.info("[%s] committed %s kept=%d rejected=%d failed=%d %s", stage.name, label,
                             counts.kept, counts.rejected, counts.failed,
                             _progress(summary.rows_in, (index + 1) / chunks, time.monotonic() - clock))
        finally:
            _use_pool(ctx, None)
            slots.stop()  # a failed chunk: transforms waiting for a slot give up
            for future in ahead:
                future.cancel()


class _Slots:
    """The scratch slots between the transform threads and the committing thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._committed = 0
        self._stopped = False

    def wait_for_slot(self, index: int) -> bool:
        """Wait until chunk `index`'s slot is free (chunk index - SLOTS committed); False
        when the run stopped first."""
        with self._changed:
            self._changed.wait_for(lambda: self._stopped or index < self._committed + SLOTS)
            return not self._stopped

    def committed(self, index: int) -> None:
        with self._changed:
            self._committed = index + 1
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()


def _progress(rows: int, fraction: float, seconds: float) -> str:
    """Input rows per second so far and the time left, for the per-chunk log line. Chunks
    are hash cuts of the input, so each holds about rows / chunks of it."""
    rate = rows * fraction / max(seconds, 1e-9)
    left = (1 - fraction) * seconds / max(fraction, 1e-9)
    return f"{rate:,.0f} rows/s, about {duration(left)} left"
