"""extract: The Stack parquet -> documented top-level Python functions (`functions`).

Input key: the file's `hexsha`. Every file yields at least one outcome row: its
functions (kept or rejected by a heuristic rule) or one file-level reject.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import LongType, StringType, StructField, StructType

from jobs.core.config import PipelineConfig
from jobs.core.context import Context
from jobs.core.failures import StageError, hint_for, root_cause
from jobs.core.sections import ExtractConfig
from jobs.core.stage import Chunking, SortKey, Stage, StageRun
from schemas import FUNCTIONS, INPUTS, PROGRESS
from schemas.outcome import (
    ITEM_ID,
    REJECT_DETAIL,
    REJECT_REASON,
    SOURCE_KEY,
    Reason,
    Source,
    outcome_schema,
    reject,
)
from udfs.extract import (
    FileReject,
    RuleSet,
    check_rules,
    extract_file,
    parsing_without_gc,
)

NAME = Source.EXTRACT
KEY = "hexsha"
OUTCOME_SCHEMA = outcome_schema(FUNCTIONS)
SOURCE_COLUMNS = ("hexsha", "repo", "path", "licenses", "stars")


# The Stack's columns this stage reads, and the Spark types it accepts for each.
EXPECTED_TYPES = {
    "hexsha": ("string",), "content": ("string", "binary"), "lang": ("string",),
    "max_stars_repo_name": ("string",), "max_stars_repo_path": ("string",),
    "max_stars_repo_licenses": ("array<string>",),
    "max_stars_count": ("int", "bigint", "smallint", "tinyint", "double", "float"),
}


def read_input(ctx: Context, paths: list[str] | None = None) -> DataFrame:
    """The input parquet as Spark reads it (input.path, or just `paths` of it), or one
    line saying why it cannot be read."""
    path = ctx.cfg.input.path
    try:
        raw = ctx.spark.read.parquet(*(paths or [path]))
    except Exception as exc:  # missing path, no parquet files, a corrupt footer
        cause = root_cause(exc) if not isinstance(exc, AnalysisException) else str(exc).strip()
        first_line = cause.splitlines()[0] if cause else type(exc).__name__
        hint = hint_for(first_line)
        raise StageError(f"{NAME}: cannot read input parquet '{path}': {first_line}"
                         + (f" ({hint})" if hint else "")) from None
    missing = {"hexsha", "content"} - set(raw.columns)
    if missing:
        raise StageError(f"{NAME}: input '{path}' lacks The Stack column(s): {', '.join(sorted(missing))}")
    for field in raw.schema.fields:
        accepted = EXPECTED_TYPES.get(field.name)
        if accepted and field.dataType.simpleString() not in accepted:
            raise StageError(f"{NAME}: input '{path}' column '{field.name}' is "
                             f"{field.dataType.simpleString()}; The Stack's is {' or '.join(accepted)}")
    return raw


_NEW_FILES = "extract.new_files"
# read_files' input columns when no file is new (a typed empty frame, no file opened).
EMPTY_INPUT = StructType([StructField("hexsha", StringType()), StructField("content", StringType())])
FILE_COLUMNS = ("path", "size", "modified_ms")
FILE_SCHEMA = StructType([StructField("path", StringType(), False), StructField("size", LongType(), False),
                          StructField("modified_ms", LongType(), False)])


@dataclass(frozen=True)
class NewFiles:
    """This stage run's listing of new and rewritten input files (collected, or
    checkpointed when there are more than read_by_name_max_files), the names of at most
    read_by_name_max_files + 1 of them, and whether `inputs` was ignored (extract's
    progress emptied: files already recorded are read again)."""

    frame: DataFrame
    first_paths: list[str]
    manifest_ignored: bool


def new_input_files(ctx: Context) -> NewFiles:
    """Files under input.path that `inputs` does not hold with the same size and time:
    new, or rewritten since extract read them. Listed once per stage run (Spark's
    file listing: names, sizes and times, no file opened) and kept (collected, or
    checkpointed), so the rows read and the files recorded afterwards are the same set
    even if files land meanwhile."""
    if _NEW_FILES in ctx.memo:
        return ctx.memo[_NEW_FILES]
    listing = listed_input(ctx).select(F.col("path"), F.col("length").alias("size"),
                                       F.unix_millis(F.col("modificationTime")).alias("modified_ms"))
    consumed = ctx.lake.read(INPUTS).select(*FILE_COLUMNS)
    ignored = _progress_forgotten(ctx)  # an emptied lake, or a user's DELETE to redo extract
    if ignored:
        consumed = consumed.limit(0)
    new = listing.join(consumed, on=list(FILE_COLUMNS), how="left_anti")
    limit = ctx.cfg.extract.read_by_name_max_files + 1
    rows = new.limit(limit).collect()
    if len(rows) < limit:  # every new file in hand: the listing is these rows, no other job
        frame = ctx.spark.createDataFrame([tuple(row) for row in rows], FILE_SCHEMA)
    else:  # a first run or a backfill: the listing kept on the executors
        frame = new.localCheckpoint(eager=True)
        rows = frame.limit(limit).collect()
    found = NewFiles(frame, sorted(row["path"] for row in rows), ignored)
    ctx.memo[_NEW_FILES] = found
    return found


def _progress_forgotten(ctx: Context) -> bool:
    """True when extract has no progress at all: then every file is read again, whatever
    `inputs` says (to redo some files only, delete their `inputs` rows too)."""
    return ctx.lake.read(PROGRESS).where(F.col("stage") == F.lit(NAME)).isEmpty()


def listed_input(ctx: Context) -> DataFrame:
    """input.path as Spark lists it (binaryFile: path, length, modificationTime; the
    content column is never read), or one line when it lists nothing Spark can read."""
    path = ctx.cfg.input.path
    local = Path(path.removeprefix("file:")) if "://" not in path else None
    # Checked here, not by Spark: a folder of other files fails inside a Spark job, with
    # a task failure logged per file before the error comes back.
    if local is not None and local.is_dir() and not any(local.rglob("*.parquet")):
        raise StageError(f"{NAME}: no parquet files in '{path}': point input.path at The Stack parquet files")
    try:
        return ctx.spark.read.format("binaryFile").load(path)
    except AnalysisException as exc:
        raise StageError(f"{NAME}: cannot read input parquet '{path}': {str(exc).strip().splitlines()[0]}"
                         f" (point input.path at The Stack parquet files)") from None


def pending_files(ctx: Context) -> DataFrame:
    """The rows of new and rewritten input files only: a consumed file is not opened."""
    new = new_input_files(ctx)
    if not new.first_paths:
        return ctx.spark.createDataFrame([], EMPTY_INPUT)
    if len(new.first_paths) <= ctx.cfg.extract.read_by_name_max_files:
        return read_input(ctx, new.first_paths)
    # A first run or a backfill: one scan of input.path, keeping the listed files' rows.
    names = new.frame.select(F.col("path").alias("_file"))
    raw = read_input(ctx)
    return (raw.withColumn("_file", F.col("_metadata.file_path"))
            .join(names, on="_file", how="left_semi").drop("_file"))


def record_consumed(run: StageRun[Any]) -> None:
    """After the chunks committed: the files read this run are consumed. A crash before
    this only means reading them again (their hexshas are in `progress`). An append:
    the listing left out every file `inputs` holds, unless it was ignored."""
    ctx = run.ctx
    new = new_input_files(ctx)
    if not new.first_paths:
        return
    rows = new.frame.withColumn("run_id", F.lit(ctx.run_id))
    if new.manifest_ignored:
        ctx.lake.insert_new(INPUTS, rows)
    else:
        ctx.lake.append(INPUTS, rows)


def read_files(ctx: Context) -> DataFrame:
    """The Stack v1 parquet at `input.path` (any path or glob Spark can read): the rows of
    files extract has not consumed yet (`inputs`)."""
    raw = pending_files(ctx)

    def column(name: str, kind: str, default: Any = None) -> Any:
        # A missing column is a typed constant: an untyped null is VOID, which parquet
        # cannot store (Spark 4.0 refuses to write it).
        return (F.col(name) if name in raw.columns else F.lit(default)).cast(kind)

    files = raw.select(
        # A row without hexsha still needs a stable key, or it could never be marked done.
        F.coalesce(F.col("hexsha"), F.sha1(F.coalesce(F.col("content").cast("binary"), F.lit(b"")))).alias(KEY),
        F.col("content"),
        column("lang", "string", "Python").alias("lang"),
        column("max_stars_repo_name", "string").alias("repo"),
        column("max_stars_repo_path", "string").alias("path"),
        column("max_stars_repo_licenses", "array<string>").alias("licenses"),
        column("max_stars_count", "long").alias("stars"),
    )
    # No dropDuplicates on the key here: it would shuffle every file's content. A file
    # listed twice yields the same outcome rows twice, and `transform` keeps one copy.
    return files


def file_keys(ctx: Context) -> DataFrame:
    """The keys of the unconsumed files from their hexsha column only, for counting what is
    pending (`selfalign plan`): `read_files` keys a file without hexsha by its content's
    hash, which means reading every file. Such a file counts as pending here."""
    raw = pending_files(ctx)
    hexsha = F.col("hexsha") if "hexsha" in raw.columns else F.lit(None)
    return raw.select(hexsha.cast("string").alias(KEY))


def rule_set(cfg: ExtractConfig) -> RuleSet:
    # Rule names were checked when the config loaded (ExtractConfig), before Spark started.
    return RuleSet(tuple(cfg.rules), cfg.max_lines, tuple(cfg.markers), frozenset(cfg.banned_imports),
                   marker_match=cfg.marker_match, banned_import_match=cfg.banned_import_match,
                   return_rule=cfg.return_rule, no_args_match=cfg.no_args_match)


def outcomes_of_file(row: dict[str, Any], rules: RuleSet, marker_re: Any, max_bytes: int) -> list[dict[str, Any]]:
    """Outcome rows for one input file (plain Python; unit-tested without Spark)."""
    source = {name: row.get(name) for name in SOURCE_COLUMNS}
    key = source["hexsha"]
    lang = row.get("lang")
    if lang is not None and lang != "Python":
        return [{**source, SOURCE_KEY: key, ITEM_ID: key, **reject(Reason.NOT_PYTHON, f"lang={lang}")}]
    result = extract_file(row.get("content"), max_bytes)
    if isinstance(result, FileReject):
        return [{**source, SOURCE_KEY: key, ITEM_ID: key, **reject(result.reason, result.detail)}]
    rows = []
    for fn in result:
        broken = check_rules(fn, rules, marker_re)
        rows.append(
            {
                "function_id": fn.function_id, "name": fn.name, "signature": fn.signature,
                "docstring": fn.docstring, "code": fn.code, "imports": fn.imports,
                "line_count": fn.line_count, "arg_count": fn.arg_count, "has_return": fn.has_return,
                **source,
                SOURCE_KEY: key,
                ITEM_ID: f"{key}:{fn.function_id}",
                REJECT_REASON: broken[0] if broken else None,
                REJECT_DETAIL: broken[1] if broken else None,
            }
        )
    return rows


def extract_batches(batches: Iterator[pa.RecordBatch], cfg: ExtractConfig) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: Arrow in, Arrow out. Plain Python rows in between; pandas would
    only add two conversions per batch to a stage that is all parsing."""
    rules = rule_set(cfg)
    marker_re = rules.marker_pattern
    arrow_schema = to_arrow_schema(OUTCOME_SCHEMA)
    names = arrow_schema.names
    for batch in batches:
        rows: list[dict[str, Any]] = []
        with parsing_without_gc():
            for record in batch.to_pylist():
                rows.extend(outcomes_of_file(record, rules, marker_re, cfg.max_file_bytes))
        yield pa.RecordBatch.from_pylist([{name: row.get(name) for name in names} for row in rows],
                                         schema=arrow_schema)


# Which copy of an exact duplicate function is kept: the most starred, then the smallest
# hexsha. The chunks are ranges of this order (jobs/core/ordered_chunks.py), so the copy
# kept is the same at any run.chunk_rows: it is in the earliest chunk holding a copy.
FIRST_COPY = (SortKey("stars", descending=True), SortKey(KEY))


@dataclass(frozen=True)
class ExtractSettings:
    cfg: ExtractConfig
    known: DataFrame  # function_id and hexsha of every function already in the lake


def settings(run: StageRun[ExtractSettings]) -> ExtractSettings:
    return ExtractSettings(run.cfg.extract, run.ctx.lake.read(FUNCTIONS).select("function_id", "hexsha"))


# Each outcome row's number, given once as the transform's rows are staged: `resolve`
# decides on key columns only and joins its few decisions back by it.
ROW = "_row"


def transform(files: DataFrame, settings: ExtractSettings) -> DataFrame:
    """Files -> outcome rows (and their ROW number), before exact duplicates are resolved
    (`resolve`)."""
    cfg = settings.cfg
    return (files.mapInArrow(lambda it: extract_batches(it, cfg), schema=OUTCOME_SCHEMA)
            .withColumn(ROW, F.monotonically_increasing_id()))


def resolve(outcomes: DataFrame, settings: ExtractSettings) -> DataFrame:
    """Exact duplicate functions keep one copy (FIRST_COPY; a copy already in the lake,
    from an earlier night or chunk, wins over every new one), and the rows of a file
    listed twice in the input count once.

    Decided on the key columns alone, then joined back by ROW: the ranking shuffles
    about 150 bytes a row instead of whole functions, and its decisions (the duplicate
    copies, usually a small share) reach every task by broadcast, so the outcome rows,
    code and all, are read once and not shuffled. No broadcast hint: adaptive execution
    broadcasts the decisions when they are small, and a night of millions of duplicates
    gets a shuffle join instead of a driver out of memory.
    """
    kept = F.col(REJECT_REASON).isNull()
    # Kept functions compete for their function_id; every other row is its own group
    # (keyed by its item id), so file-level rejects, which have no function_id, do not
    # all land in one partition.
    group = F.when(kept, F.col("function_id")).otherwise(F.col(ITEM_ID))
    first_copy = Window.partitionBy(group).orderBy(
        *(F.col(key.column).desc_nulls_last() if key.descending else F.col(key.column).asc_nulls_last()
          for key in FIRST_COPY))
    known = settings.known.select(F.col("function_id"), F.col("hexsha").alias("_known_hexsha"))
    ranked = (
        outcomes.select(ROW, "function_id", KEY, "stars", REJECT_REASON, ITEM_ID)
        .withColumn("_rank", F.row_number().over(first_copy))
        .withColumn("_first_hexsha", F.first(KEY).over(first_copy))
        .join(known, on="function_id", how="left")
    )
    # A later row of the first copy's own file is the same file listed again.
    listed_again = (F.col("_rank") > 1) & (F.col(KEY) == F.col("_first_hexsha"))
    duplicate = kept & (F.col("_known_hexsha").isNotNull() | (F.col("_rank") > 1))
    # One text for both: whether the kept copy was committed by an earlier chunk or is in
    # this one depends on the chunk size, and the rejects must not.
    decisions = ranked.where(listed_again | duplicate).select(
        ROW, listed_again.alias("_listed_again"),
        F.concat(F.lit("same code kept from file "), F.coalesce("_known_hexsha", "_first_hexsha")).alias("_kept_from"))
    decided = outcomes.join(decisions, on=ROW, how="left").where(~F.coalesce("_listed_again", F.lit(False)))
    is_duplicate = F.col("_kept_from").isNotNull()
    return decided.select(
        *[c for c in OUTCOME_SCHEMA.fieldNames() if c not in (REJECT_REASON, REJECT_DETAIL)],
        F.when(is_duplicate, F.lit(Reason.EXACT_DUPLICATE.value)).otherwise(F.col(REJECT_REASON)).alias(REJECT_REASON),
        F.when(is_duplicate, F.col("_kept_from")).otherwise(F.col(REJECT_DETAIL)).alias(REJECT_DETAIL),
    )


def no_input_rows(cfg: PipelineConfig) -> str:
    """An input with no rows at all on a first run is a wrong path, not a night without
    new files (the runner raises this after counting the staged input: no extra scan)."""
    return f"{NAME}: no input rows in '{cfg.input.path}': point input.path at The Stack parquet files"


STAGE = Stage(
    name=NAME, output=FUNCTIONS, key=KEY, read=read_files, settings=settings, transform=transform,
    resolve=resolve,
    after=(record_consumed,), empty_input_error=no_input_rows,
    appends_after_clean_run=True,  # known function_ids become exact_duplicate rejects
    keys=file_keys, chunking=Chunking(order=FIRST_COPY), retries=False,
)
