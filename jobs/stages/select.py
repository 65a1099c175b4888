"""select: one passing response per instruction, deduplicated, as an SFT pair (`sft`).

Ready input: an instruction is judged only once it is complete, i.e. the respond stage
has committed it (all its samples are in `responses`) and every runnable response
of it has an `executions` verdict. A response the sandbox has yet to run, or must
retry after a sandbox-error, keeps its instruction waiting, so an instruction is
never rejected for lack of a passing response that simply has not run yet.

Then, as two clear steps (identify duplicates, then remove them):

1. choose: per instruction, the passing response first in the order of
   sha256("<run.seed>:<instruction_id>:<response_id>"), a draw that is random across
   instructions but fixed by the ids, so reruns and fresh lakes pick the same one.
   Instructions with none are rejects (`no_passing_response`).
2. dedup, in this order, each step over the survivors of the one before:
   exact duplicate instructions, then exact duplicate (cleaned) responses, both
   whitespace-normalized; then near-duplicate instructions by MinHash-LSH over word
   shingles (the dedup stage's Spark functions), confirmed on the exact Jaccard at
   `select.instruction_threshold`, grouped into connected components; last, as the
   published cleaning did (`select.diversify_function_names`), of the instructions made
   from one seed at most one per set of top-level function names its code defines (one
   instruction keeps one response, so the group is the seed's instructions). Each
   group keeps its smallest instruction_id; rows already in `sft` always win (an earlier
   run chose them), and the others are rejects (`duplicate_instruction`,
   `duplicate_response`, `near_duplicate_instruction`, `same_function_names`) naming the
   kept id.

The response is stored as SFT text: udfs.parse.clean_response drops the section
headings and any leaked continuation. A global operation: one chunk per run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from jobs.core.context import Context
from jobs.core.pandas_udf import series_udf
from jobs.core.readers import runnable
from jobs.core.stage import WHOLE_INPUT, Stage
from jobs.ops.components import connected_components
from jobs.ops.lsh import (
    LSHParams,
    band_keys,
    candidate_pairs,
    confirmed_edges,
    jaccard_label,
    signatures,
    verifying,
    with_jaccard,
)
from schemas import EXECUTIONS, FUNCTIONS, INSTRUCTIONS, PROGRESS, RESPONSES, SFT
from schemas.outcome import ITEM_ID, REJECT_DETAIL, REJECT_REASON, SOURCE_KEY, outcome_schema
from udfs.parse import clean_response, defined_function_names
from udfs.sanitize import PLACEHOLDER_PATTERN, SanitizeOptions, sanitize

NAME = "select"
KEY = "instruction_id"
OUTCOME_SCHEMA = outcome_schema(SFT)

NO_PASSING = "no_passing_response"
DUPLICATE_INSTRUCTION = "duplicate_instruction"
DUPLICATE_RESPONSE = "duplicate_response"
NEAR_DUPLICATE = "near_duplicate_instruction"
SAME_FUNCTION_NAMES = "same_function_names"


def normalized(column: str) -> Column:
    """Whitespace-normalized text: runs of whitespace become one space, ends trimmed."""
    return F.trim(F.regexp_replace(F.col(column), r"\s+", " "))


def _clean_series(responses: pd.Series) -> pd.Series:
    return responses.map(clean_response)


_clean = series_udf(_clean_series, StringType())
_function_names = series_udf(lambda codes: codes.map(defined_function_names), StringType())


# --- step 1: choose ----------------------------------------------------------------------

def draw_order(seed: int) -> Column:
    """The per-instruction random order of its responses, fixed by the ids and run.seed."""
    return F.sha2(F.concat_ws(":", F.lit(str(seed)), F.col(KEY), F.col("response_id")), 256)


def choose(responses: DataFrame, executions: DataFrame, seed: int,
           skip_placeholders: bool = False) -> DataFrame:
    """Per instruction, its first passing response in draw order (responses' columns);
    skip_placeholders: never one whose code is a placeholder (the published sanitizing)."""
    passing = executions.where(F.col("passed")).select("response_id")
    if skip_placeholders:
        responses = responses.where(~F.coalesce(F.col("code").rlike(PLACEHOLDER_PATTERN), F.lit(False)))
    first = Window.partitionBy(KEY).orderBy(draw_order(seed), F.col("response_id"))
    return (
        responses.join(passing, on="response_id", how="inner")
        .withColumn("_rank", F.row_number().over(first))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )


def verdict_summary(responses: DataFrame, executions: DataFrame) -> DataFrame:
    """(instruction_id, detail): what became of each instruction's responses, in words."""
    statuses = (
        responses.select("response_id", KEY)
        .join(executions.select("response_id", "status"), on="response_id", how="left")
        .withColumn("status", F.coalesce(F.col("status"), F.lit("not runnable")))
        .groupBy(KEY, "status").count()
        .groupBy(KEY)
        .agg(
            F.sum("count").alias("total"),
            F.concat_ws(", ", F.sort_array(F.collect_list(
                F.format_string("%s %d", F.col("status"), F.col("count"))))).alias("statuses"),
        )
    )
    return statuses.select(KEY, F.format_string("0 of %d responses passed (%s)", F.col("total"),
                                                F.col("statuses")).alias("detail"))


# --- step 2: duplicates ------------------------------------------------------------------

def exact_duplicates(nodes: DataFrame, text: str) -> DataFrame:
    """(instruction_id, kept_id) of new nodes whose `text` equals a kept node's.

    `nodes`: instruction_id, is_new, text. Per text the keeper is an existing row if
    any (the smallest), else the smallest new id: struct order puts False first.
    """
    keepers = nodes.groupBy(text).agg(F.min(F.struct(F.col("is_new"), F.col(KEY))).alias("_keep"))
    return (
        nodes.where(F.col("is_new"))
        .join(keepers, on=text, how="inner")
        .where(F.col(KEY) != F.col(f"_keep.{KEY}"))
        .select(KEY, F.col(f"_keep.{KEY}").alias("kept_id"))
    )


def near_duplicates(nodes: DataFrame, cfg: LSHParams) -> DataFrame:
    """(instruction_id, kept_id, jaccard) of new nodes in a near-duplicate group led by another.

    `nodes`: instruction_id, is_new, instruction. Candidates need a new node on one side;
    two existing rows are never compared again. The group's keeper: its smallest
    existing id if any, else its smallest new id.
    """
    items = nodes.select(F.col(KEY).alias("id"), F.col("instruction").alias("text"), "is_new")
    sigs = signatures(items, cfg).join(items.select("id", "is_new"), on="id", how="inner").localCheckpoint()
    edges = confirmed_edges(candidate_pairs(band_keys(sigs, cfg)), sigs.select("id", "signature", "shingles"),
                            cfg).localCheckpoint()
    labels, _ = connected_components(edges, cfg.max_iterations)
    members = labels.join(sigs.select("id", "is_new"), on="id", how="inner")
    keepers = members.groupBy("component").agg(F.min(F.struct(F.col("is_new"), F.col("id"))).alias("_keep"))
    dropped = (
        members.where(F.col("is_new"))
        .join(keepers, on="component", how="inner")
        .where(F.col("id") != F.col("_keep.id"))
        .select("id", F.col("_keep.id").alias("kept_id"))
    )
    scored = with_jaccard(dropped, "id", "kept_id", verifying(sigs.select("id", "signature", "shingles"), cfg),
                          cfg.num_perm)
    return scored.select(F.col("id").alias(KEY), "kept_id", "jaccard", jaccard_label().alias("measure"))


def same_function_names(nodes: DataFrame) -> DataFrame:
    """(instruction_id, kept_id, names) of new nodes whose code defines the same top-level
    functions as another node from the same seed; code defining none is never grouped.

    `nodes`: instruction_id, is_new, seed_id, names. Keepers as in `exact_duplicates`.
    """
    named = nodes.where(F.col("names") != "").withColumn(
        "_group", F.concat_ws("\u0000", F.col("seed_id"), F.col("names")))
    same = exact_duplicates(named.select(KEY, "is_new", "_group"), "_group")
    return same.join(named.select(KEY, "names"), on=KEY, how="inner")


# --- the transform -----------------------------------------------------------------------

def _rejects(rows: DataFrame, reason: str, detail: Column) -> DataFrame:
    return rows.select(KEY, F.lit(reason).alias(REJECT_REASON), detail.alias(REJECT_DETAIL))


@dataclass(frozen=True)
class SelectSettings:
    params: LSHParams  # near-duplicate instructions
    seed: int  # run.seed: the draw among passing responses, the sanitizing coins
    # Lazy tables: all responses and executions, the source functions, and the `sft`
    # rows of earlier runs.
    responses: DataFrame
    executions: DataFrame
    functions: DataFrame
    existing: DataFrame
    # All instructions (earlier sft rows are compared by their instruction as written).
    instructions: DataFrame
    sanitize: SanitizeOptions | None = None  # None: select.sanitize.enabled is false
    diversify_function_names: bool = True


def settings(ctx: Context) -> SelectSettings:
    lake, cfg = ctx.lake, ctx.cfg.select.sanitize
    options = SanitizeOptions(cfg.drop_probability, cfg.assert_probability, cfg.max_asserts)
    return SelectSettings(
        LSHParams.from_config(ctx.cfg.select, threshold="instruction_threshold"), ctx.cfg.run.seed,
        lake.read(RESPONSES), lake.read(EXECUTIONS), lake.read(FUNCTIONS), lake.read(SFT),
        lake.read(INSTRUCTIONS), options if cfg.enabled else None,
        ctx.cfg.select.diversify_function_names,
    )


SANITIZED = StructType([StructField(name, StringType(), True)
                        for name in ("instruction", "response", "sanitizing")])


def sanitizer(options: SanitizeOptions, seed: int) -> Callable[..., Column]:
    """(instruction_id, instruction, raw response) -> the sanitized pair and its choices."""
    def run(ids: pd.Series, instructions: pd.Series, responses: pd.Series) -> pd.DataFrame:
        done = [sanitize(text, response, key, seed, options)
                for key, text, response in zip(ids, instructions, responses, strict=True)]
        return pd.DataFrame({
            "instruction": [d.instruction for d in done],
            "response": [d.response for d in done],
            "sanitizing": [json.dumps(d.choices, sort_keys=True) for d in done],
        })

    return series_udf(run, SANITIZED)


def transform(instructions: DataFrame, settings: SelectSettings) -> DataFrame:
    """Ready instructions (INSTRUCTIONS columns) -> one outcome row per instruction."""
    responses, executions, seed = settings.responses, settings.executions, settings.seed
    functions, existing = settings.functions, settings.existing
    ids = instructions.select(KEY)
    theirs = responses.join(ids, on=KEY, how="inner")
    chosen = choose(theirs, executions, seed, skip_placeholders=settings.sanitize is not None).select(
        KEY, "response_id", _clean(F.col("response")).alias("response"), "model", "prompt_version",
        "sampling", F.col("response").alias("_raw"), _function_names(F.col("code")).alias("names"),
    )
    no_passing = ids.join(chosen.select(KEY), on=KEY, how="left_anti").join(
        verdict_summary(theirs, executions), on=KEY, how="left")

    # Rows already in `sft` compete as keepers; one whose key is pending again (a crash
    # after the sft commit, before progress) is that same row, not a rival. They compete
    # as written before sanitizing: the instruction, the cleaned response.
    earlier = (
        existing.join(ids, on=KEY, how="left_anti").select(KEY, "response_id")
        .join(settings.instructions.select(KEY, "instruction", "seed_id"), on=KEY, how="inner")
        .join(responses.select("response_id", _clean(F.col("response")).alias("response"),
                               _function_names(F.col("code")).alias("names")),
              on="response_id", how="inner")
        .select(KEY, "instruction", "response", "seed_id", "names", F.lit(False).alias("is_new"))
    )
    candidates = chosen.join(instructions.select(KEY, "instruction", "seed_id"), on=KEY, how="inner").select(
        KEY, "instruction", "response", "seed_id", "names", F.lit(True).alias("is_new"))
    nodes = candidates.unionByName(earlier).select(
        KEY, "is_new", "instruction", "response", "seed_id", "names",
        normalized("instruction").alias("_instruction"), normalized("response").alias("_response"),
    ).localCheckpoint()

    same_instruction = exact_duplicates(nodes.select(KEY, "is_new", "_instruction"), "_instruction")
    left = nodes.join(same_instruction.select(KEY), on=KEY, how="left_anti")
    same_response = exact_duplicates(left.select(KEY, "is_new", "_response"), "_response")
    left = left.join(same_response.select(KEY), on=KEY, how="left_anti")
    near = near_duplicates(left.select(KEY, "is_new", "instruction"), settings.params)
    left = left.join(near.select(KEY), on=KEY, how="left_anti")
    if settings.diversify_function_names:
        same_names = same_function_names(left.select(KEY, "is_new", "seed_id", "names"))
    else:
        same_names = left.select(KEY, F.lit(None).cast("string").alias("kept_id"),
                                 F.lit(None).cast("string").alias("names")).limit(0)

    rejected = (
        _rejects(no_passing, NO_PASSING, F.coalesce(F.col("detail"), F.lit("no responses")))
        .unionByName(_rejects(same_instruction, DUPLICATE_INSTRUCTION, F.format_string(
            "same instruction (whitespace-normalized) as %s", F.col("kept_id"))))
        .unionByName(_rejects(same_response, DUPLICATE_RESPONSE, F.format_string(
            "same chosen response (whitespace-normalized) as %s", F.col("kept_id"))))
        .unionByName(_rejects(near, NEAR_DUPLICATE, F.format_string(
            "near duplicate of %s: %s %.3f (threshold %.2f)", F.col("kept_id"), F.col("measure"),
            F.col("jaccard"), F.lit(settings.params.threshold))))
        .unionByName(_rejects(same_names, SAME_FUNCTION_NAMES, F.format_string(
            "defines the same functions (%s) as %s, from the same seed", F.col("names"),
            F.col("kept_id"))))
    )
    sources = functions.select(
        F.col("function_id").alias("seed_id"), "hexsha", "repo", "path", "licenses")
    kept = (
        chosen.join(rejected.select(KEY), on=KEY, how="left_anti")
        .join(instructions.select(
            KEY, "instruction", "seed_id", "concepts", "category", "difficulty",
            F.col("model").alias("instruction_model"),
            F.col("prompt_version").alias("instruction_prompt_version"),
        ), on=KEY, how="inner")
        .join(sources, on="seed_id", how="left")
    )
    if settings.sanitize is not None:
        done = kept.withColumn("_s", sanitizer(settings.sanitize, seed)(F.col(KEY), F.col("instruction"), F.col("_raw")))
        kept = done.withColumns({name: F.col(f"_s.{name}") for name in SANITIZED.fieldNames()}).drop("_s")
    outcomes = kept.drop("_raw", "names").unionByName(rejected, allowMissingColumns=True)
    return outcomes.select(
        *[F.col(f.name).cast(f.dataType).alias(f.name) for f in OUTCOME_SCHEMA.fields
          if f.name not in (SOURCE_KEY, ITEM_ID) and f.name in outcomes.columns],
        F.col(KEY).alias(SOURCE_KEY),
        F.col(KEY).alias(ITEM_ID),
    )


# --- the stage ---------------------------------------------------------------------------

def ready(ctx: Context) -> DataFrame:
    """Instructions whose responses are all in and all judged by the sandbox."""
    responded = ctx.lake.read(PROGRESS).where(F.col("stage") == F.lit("respond")).select(
        F.col("input_key").alias(KEY))
    judged = ctx.lake.read(EXECUTIONS).select("response_id")
    waiting = (
        runnable(ctx.lake.read(RESPONSES)).select("response_id", KEY)
        .join(judged, on="response_id", how="left_anti")
        .select(KEY).distinct()
    )
    return (
        ctx.lake.read(INSTRUCTIONS)
        .join(responded, on=KEY, how="inner")
        .join(waiting, on=KEY, how="left_anti")
    )


STAGE = Stage(
    name=NAME, output=SFT, key=KEY, read=ready, settings=settings, transform=transform,
    chunking=WHOLE_INPUT,  # duplicates are found across all ready instructions: one chunk
)
