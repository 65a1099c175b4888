"""select: one passing response per instruction, deduplicated, as an SFT pair (`sft`).

Ready input: an instruction is judged only once it is complete, i.e. the respond stage
has committed it (all its samples are in `responses`) and every runnable response
of it has an `executions` verdict. A response the sandbox has yet to run, or must
retry after a sandbox-error, keeps its instruction waiting, so an instruction is
never rejected for lack of a passing response that simply has not run yet.

Candidates are the passing responses select may use (udfs/sanitize.py: under selfalign's
sanitizing none with placeholder code, under the published one only those in its
layout); an instruction with passing responses but no candidate is a
`no_usable_response` reject, one with none a `no_passing_response`.

Then the cleaning, by select.diversify_function_names:

- per_seed / off (selfalign): choose per instruction the candidate first in the order
  of sha256("<run.seed>:<instruction_id>:<response_id>"), a draw random across
  instructions but fixed by the ids; then, each step over the survivors of the one
  before, exact duplicate instructions, exact duplicate (cleaned) responses (both
  whitespace-normalized), near-duplicate instructions (MinHash-LSH over word shingles,
  confirmed on the exact Jaccard at `select.instruction_threshold`, connected
  components: dedup's chain, jobs/ops/near_duplicates.py; `select.near_duplicates`),
  and with per_seed, of one seed's instructions at most one per set of top-level
  function names. Each group keeps its smallest
  instruction_id; rows already in `sft` always win.
- global (published): every candidate, in a seeded shuffle, first come over its keys
  (whitespace-free instruction and response, every function name of its first code
  block) against the keys of every pair already in `sft` (jobs/ops/first_come.py);
  unparsable code drops the pair (`unparsable_code`); then near duplicates when on.

Rejects (`duplicate_instruction`, `duplicate_response`, `near_duplicate_instruction`,
`same_function_names`, `placeholder_in_response`) name the kept id or the cause. The
kept pair is sanitized (udfs/sanitize.py) and stores its keys (`sft.dedup_keys`).

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
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from jobs.core.context import Context
from jobs.core.pandas_udf import series_udf
from jobs.core.readers import runnable
from jobs.core.stage import WHOLE_INPUT, Stage, StageRun
from jobs.ops.first_come import shuffle_order, walk
from jobs.ops.lsh import LSHParams
from jobs.ops.near_duplicates import near_duplicate_components, signed_nodes, similarity
from schemas import EXECUTIONS, FUNCTIONS, INSTRUCTIONS, PROGRESS, RESPONSES, SFT
from schemas.outcome import (
    ITEM_ID,
    REJECT_DETAIL,
    REJECT_REASON,
    SOURCE_KEY,
    Reason,
    Source,
    outcome_schema,
)
from udfs.diversify import pair_keys
from udfs.parse import clean_response, defined_function_names
from udfs.sanitize import PLACEHOLDER_PATTERN, SanitizeOptions, published_layout, sanitize

NAME = Source.SELECT
KEY = "instruction_id"
OUTCOME_SCHEMA = outcome_schema(SFT)



def normalized(column: str) -> Column:
    """Whitespace-normalized text: runs of whitespace become one space, ends trimmed."""
    return F.trim(F.regexp_replace(F.col(column), r"\s+", " "))


def _clean_series(responses: pd.Series) -> pd.Series:
    return responses.map(clean_response)


_clean = series_udf(_clean_series, StringType())
_function_names = series_udf(lambda codes: codes.map(defined_function_names), StringType())
_layout_problem = series_udf(
    lambda responses: responses.map(lambda text: problem if isinstance(problem := published_layout(text), str)
                                    else None), StringType())


def _pair_keys_frame(instructions: pd.Series, responses: pd.Series) -> pd.Series:
    return pd.Series([pair_keys(i, r) for i, r in zip(instructions, responses, strict=True)], dtype=object)


_pair_keys = series_udf(_pair_keys_frame, ArrayType(StringType()))


# --- step 1: choose ----------------------------------------------------------------------

def draw_order(seed: int) -> Column:
    """The per-instruction random order of its responses, fixed by the ids and run.seed."""
    return F.sha2(F.concat_ws(":", F.lit(str(seed)), F.col(KEY), F.col("response_id")), 256)


def usable(responses: DataFrame, sanitizing: SanitizeOptions | None) -> DataFrame:
    """The responses select may choose: under selfalign's sanitizing none whose code is
    a placeholder; under the published one only those in its layout (its first pass)."""
    if sanitizing is None:
        return responses
    if sanitizing.style == "published":
        return responses.where(_layout_problem(F.col("response")).isNull())
    return responses.where(~F.coalesce(F.col("code").rlike(PLACEHOLDER_PATTERN), F.lit(False)))


def passing(responses: DataFrame, executions: DataFrame) -> DataFrame:
    return responses.join(executions.where(F.col("passed")).select("response_id"), on="response_id", how="inner")


def choose(responses: DataFrame, executions: DataFrame, seed: int,
           sanitizing: SanitizeOptions | None = None) -> DataFrame:
    """Per instruction, its first usable passing response in draw order (responses' columns)."""
    first = Window.partitionBy(KEY).orderBy(draw_order(seed), F.col("response_id"))
    return (
        usable(passing(responses, executions), sanitizing)
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


def unchosen(ids: DataFrame, responses: DataFrame, executions: DataFrame,
             candidates: DataFrame, sanitizing: SanitizeOptions | None) -> DataFrame:
    """Rejects of instructions with no candidate: none passed, or none passing is usable."""
    passed = passing(responses, executions).groupBy(KEY).count()
    none_passed = ids.join(passed.select(KEY), on=KEY, how="left_anti").join(
        verdict_summary(responses, executions), on=KEY, how="left")
    why = ("in the published layout (select.sanitize.style: published)"
           if sanitizing is not None and sanitizing.style == "published" else "free of placeholder code")
    none_usable = passed.join(candidates.select(KEY).distinct(), on=KEY, how="left_anti")
    return _rejects(none_passed, Reason.NO_PASSING_RESPONSE, F.coalesce(F.col("detail"), F.lit("no responses"))).unionByName(
        _rejects(none_usable, Reason.NO_USABLE_RESPONSE, F.format_string(f"%d passing response(s), none {why}", F.col("count"))))


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
    signed = signed_nodes(nodes.select(KEY, F.col("instruction").alias("text"), "is_new"), cfg, id_col=KEY)
    members = near_duplicate_components(signed, cfg, id_col=KEY).components.join(
        signed.select(KEY, "is_new"), on=KEY, how="inner")
    keepers = members.groupBy("component").agg(F.min(F.struct(F.col("is_new"), F.col(KEY))).alias("_keep"))
    dropped = (
        members.where(F.col("is_new"))
        .join(keepers, on="component", how="inner")
        .where(F.col(KEY) != F.col(f"_keep.{KEY}"))
        .select(KEY, F.col(f"_keep.{KEY}").alias("kept_id"))
    )
    return similarity(dropped, KEY, "kept_id", signed, cfg, id_col=KEY).select(KEY, "kept_id", "jaccard", "measure")


def same_function_names(nodes: DataFrame) -> DataFrame:
    """(instruction_id, kept_id, names) of new nodes whose code defines the same top-level
    functions as another node from the same seed; code defining none is never grouped.

    `nodes`: instruction_id, is_new, seed_id, names. Keepers as in `exact_duplicates`.
    """
    named = nodes.where(F.col("names") != "").withColumn(
        "_group", F.concat_ws("\u0000", F.col("seed_id"), F.col("names")))
    same = exact_duplicates(named.select(KEY, "is_new", "_group"), "_group")
    return same.join(named.select(KEY, "names"), on=KEY, how="inner")


def _near_rejects(nodes: DataFrame, params: LSHParams) -> DataFrame:
    near = near_duplicates(nodes.select(KEY, "is_new", "instruction"), params)
    return _rejects(near, Reason.NEAR_DUPLICATE_INSTRUCTION, F.format_string(
        "near duplicate of %s: %s %.3f (threshold %.2f)", F.col("kept_id"), F.col("measure"),
        F.col("jaccard"), F.lit(params.threshold)))


def per_instruction(pairs: DataFrame, settings: SelectSettings, ids: DataFrame) -> tuple[DataFrame, DataFrame]:
    """selfalign's cleaning: one response per instruction by the draw, then exact duplicate
    instructions and responses, near duplicates, and one per seed and set of top-level
    function names, each step over the survivors of the one before. (kept pairs, rejects)"""
    first = Window.partitionBy(KEY).orderBy(draw_order(settings.seed), F.col("response_id"))
    # Cleaned and parsed after the draw: one response per instruction, not all ten.
    chosen = (
        pairs.withColumn("_rank", F.row_number().over(first)).where(F.col("_rank") == 1).drop("_rank")
        .withColumns({"response": _clean(F.col("_raw")), "names": _function_names(F.col("code"))})
        .localCheckpoint()
    )
    # Rows already in `sft` compete as keepers; one whose key is pending again (a crash
    # after the sft commit, before progress) is that same row, not a rival. They compete
    # as written before sanitizing: the instruction, the cleaned response.
    earlier = (
        settings.existing.join(ids, on=KEY, how="left_anti").select(KEY, "response_id")
        .join(settings.instructions.select(KEY, "instruction", "seed_id"), on=KEY, how="inner")
        .join(settings.responses.select("response_id", _clean(F.col("response")).alias("response"),
                                        _function_names(F.col("code")).alias("names")),
              on="response_id", how="inner")
        .select(KEY, "instruction", "response", "seed_id", "names", F.lit(False).alias("is_new"))
    )
    nodes = chosen.select(KEY, "instruction", "response", "seed_id", "names", F.lit(True).alias("is_new")) \
        .unionByName(earlier).select(
            KEY, "is_new", "instruction", "seed_id", "names",
            normalized("instruction").alias("_instruction"), normalized("response").alias("_response"),
        ).localCheckpoint()

    same_instruction = exact_duplicates(nodes.select(KEY, "is_new", "_instruction"), "_instruction")
    left = nodes.join(same_instruction.select(KEY), on=KEY, how="left_anti")
    same_response = exact_duplicates(left.select(KEY, "is_new", "_response"), "_response")
    left = left.join(same_response.select(KEY), on=KEY, how="left_anti")
    rejected = _rejects(same_instruction, Reason.DUPLICATE_INSTRUCTION, F.format_string(
        "same instruction (whitespace-normalized) as %s", F.col("kept_id"))).unionByName(
        _rejects(same_response, Reason.DUPLICATE_RESPONSE, F.format_string(
            "same chosen response (whitespace-normalized) as %s", F.col("kept_id"))))
    if settings.near_duplicates:
        near = _near_rejects(left, settings.params)
        left = left.join(near.select(KEY), on=KEY, how="left_anti")
        rejected = rejected.unionByName(near)
    if settings.diversify_function_names == "per_seed":
        same_names = same_function_names(left.select(KEY, "is_new", "seed_id", "names"))
        rejected = rejected.unionByName(_rejects(same_names, Reason.SAME_FUNCTION_NAMES, F.format_string(
            "defines the same functions (%s) as %s, from the same seed", F.col("names"), F.col("kept_id"))))
    return chosen.join(rejected.select(KEY), on=KEY, how="left_anti"), rejected


def stored_keys(settings: SelectSettings, ids: DataFrame) -> DataFrame:
    """(instruction_id, dedup_keys) of the pairs already in `sft`. Rows written before
    the column existed get theirs from their instruction and response, once per run."""
    rows = settings.existing.join(ids, on=KEY, how="left_anti").select(KEY, "response_id", "dedup_keys")
    missing = (
        rows.where(F.col("dedup_keys").isNull()).select(KEY, "response_id")
        .join(settings.instructions.select(KEY, "instruction"), on=KEY, how="inner")
        .join(settings.responses.select("response_id", "response"), on="response_id", how="inner")
        .select(KEY, _pair_keys(F.col("instruction"), _clean(F.col("response"))).alias("dedup_keys"))
    )
    return rows.where(F.col("dedup_keys").isNotNull()).select(KEY, "dedup_keys").unionByName(
        missing.where(F.col("dedup_keys").isNotNull()))


_KIND_REASONS = {"instruction": Reason.DUPLICATE_INSTRUCTION, "response": Reason.DUPLICATE_RESPONSE,
                 "function_names": Reason.SAME_FUNCTION_NAMES}
_KIND_DETAILS = {"instruction": "same instruction (whitespace removed) as %s",
                 "response": "same response (whitespace removed) as %s",
                 "function_names": "defines the same function names, in order, as %s (over all pairs)"}


def global_clean(pairs: DataFrame, settings: SelectSettings, ids: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The published cleaning (select.diversify_function_names: global): all usable passing
    responses walked first come over their keys against every pair ever kept
    (jobs/ops/first_come.py); code that does not parse drops the pair; then near
    duplicates when on. An instruction none of whose pairs survived is rejected for the
    reason of its first in the shuffle. (kept pairs, rejects)"""
    # Checkpointed: the one-task walk feeds both the kept pairs and the rejects.
    claims = walk(pairs.where(F.col("_keys").isNotNull()), stored_keys(settings, ids), settings.seed).localCheckpoint()
    kept = pairs.join(claims.where(F.col("kept")).select("response_id"), on="response_id", how="inner")
    reason = F.coalesce(*[F.when(F.col("kind") == kind, F.lit(why)) for kind, why in _KIND_REASONS.items()])
    detail = F.coalesce(*[F.when(F.col("kind") == kind, F.format_string(text, F.col("kept_id")))
                          for kind, text in _KIND_DETAILS.items()])
    lost = claims.where(~F.col("kept")).select("response_id", KEY, reason.alias(REJECT_REASON),
                                                 detail.alias(REJECT_DETAIL)).unionByName(
        pairs.where(F.col("_keys").isNull()).select(
            "response_id", KEY, F.lit(Reason.UNPARSABLE_CODE).alias(REJECT_REASON),
            F.lit("the response's first code block does not parse").alias(REJECT_DETAIL)))
    first = Window.partitionBy(KEY).orderBy(shuffle_order(settings.seed), F.col("response_id"))
    rejected = (
        lost.join(kept.select(KEY), on=KEY, how="left_anti")
        .withColumn("_rank", F.row_number().over(first)).where(F.col("_rank") == 1)
        .select(KEY, REJECT_REASON, REJECT_DETAIL)
    )
    if settings.near_duplicates:
        earlier = settings.existing.join(ids, on=KEY, how="left_anti").select(KEY).join(
            settings.instructions.select(KEY, "instruction"), on=KEY, how="inner")
        nodes = kept.select(KEY, "instruction", F.lit(True).alias("is_new")).unionByName(
            earlier.withColumn("is_new", F.lit(False)))
        near = _near_rejects(nodes, settings.params)
        kept = kept.join(near.select(KEY), on=KEY, how="left_anti")
        rejected = rejected.unionByName(near)
    return kept, rejected


# --- the transform -----------------------------------------------------------------------

def _rejects(rows: DataFrame, reason: Reason, detail: Column) -> DataFrame:
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
    diversify_function_names: str = "per_seed"  # off | per_seed | global
    near_duplicates: bool = True


def settings(run: StageRun[SelectSettings]) -> SelectSettings:
    ctx = run.ctx
    lake, select = ctx.lake, ctx.cfg.select
    cfg = select.sanitize
    options = SanitizeOptions(cfg.drop_probability, cfg.assert_probability, cfg.max_asserts, cfg.style)
    return SelectSettings(
        LSHParams.from_config(select, threshold="instruction_threshold"), ctx.cfg.run.seed,
        lake.read(RESPONSES), lake.read(EXECUTIONS), lake.read(FUNCTIONS), lake.read(SFT),
        lake.read(INSTRUCTIONS), options if cfg.enabled else None,
        select.diversify_function_names, select.near_duplicates,
    )


SANITIZED = StructType([StructField(name, StringType(), True)
                        for name in ("instruction", "response", "sanitizing", "placeholder")])


def sanitizer(options: SanitizeOptions, seed: int) -> Callable[..., Column]:
    """(instruction_id, instruction, raw response) -> the sanitized pair, its choices, and
    the placeholder that drops it (published style)."""
    def run(ids: pd.Series, instructions: pd.Series, responses: pd.Series) -> pd.DataFrame:
        done = [sanitize(text, response, key, seed, options)
                for key, text, response in zip(ids, instructions, responses, strict=True)]
        return pd.DataFrame({
            "instruction": [d.instruction for d in done],
            "response": [d.response for d in done],
            "sanitizing": [json.dumps(d.choices, sort_keys=True) for d in done],
            "placeholder": [d.placeholder for d in done],
        })

    return series_udf(run, SANITIZED)


def transform(instructions: DataFrame, settings: SelectSettings) -> DataFrame:
    """Ready instructions (INSTRUCTIONS columns) -> one outcome row per instruction."""
    ids = instructions.select(KEY)
    theirs = settings.responses.join(ids, on=KEY, how="inner")
    candidates = usable(passing(theirs, settings.executions), settings.sanitize)
    pairs = candidates.join(instructions.select(KEY, "instruction", "seed_id"), on=KEY, how="inner").select(
        KEY, "response_id", "instruction", "seed_id", "model", "prompt_version", "sampling", "code",
        F.col("response").alias("_raw"),
    )
    keys = _pair_keys(F.col("instruction"), F.col("response"))
    if settings.diversify_function_names == "global":  # every candidate cleaned and keyed, once
        cleaned = pairs.withColumn("response", _clean(F.col("_raw"))).withColumn("_keys", keys)
        chosen, rejected = global_clean(cleaned.localCheckpoint(), settings, ids)
    else:  # the chosen pairs' keys only, stored for a later switch to global
        chosen, rejected = per_instruction(pairs, settings, ids)
        chosen = chosen.withColumn("_keys", keys)
    rejected = unchosen(ids, theirs, settings.executions, candidates, settings.sanitize).unionByName(rejected)

    sources = settings.functions.select(
        F.col("function_id").alias("seed_id"), "hexsha", "repo", "path", "licenses")
    kept = (
        chosen.select(KEY, "response_id", "response", "model", "prompt_version", "sampling", "_raw",
                      F.col("_keys").alias("dedup_keys"))
        .join(instructions.select(
            KEY, "instruction", "seed_id", "concepts", "category", "difficulty",
            F.col("model").alias("instruction_model"),
            F.col("prompt_version").alias("instruction_prompt_version"),
        ), on=KEY, how="inner")
        .join(sources, on="seed_id", how="left")
    )
    if settings.sanitize is not None:
        done = kept.withColumn("_s", sanitizer(settings.sanitize, settings.seed)(
            F.col(KEY), F.col("instruction"), F.col("_raw"))).localCheckpoint()
        dropped = done.where(F.col("_s.placeholder").isNotNull())
        rejected = rejected.unionByName(_rejects(dropped, Reason.PLACEHOLDER_IN_RESPONSE, F.format_string(
            "the response holds %s (select.sanitize.style: published drops it)", F.col("_s.placeholder"))))
        kept = done.where(F.col("_s.placeholder").isNull()).withColumns(
            {name: F.col(f"_s.{name}") for name in ("instruction", "response", "sanitizing")}).drop("_s")
    outcomes = kept.drop("_raw").unionByName(rejected, allowMissingColumns=True)
    return outcomes.select(
        *[F.col(f.name).cast(f.dataType).alias(f.name) for f in OUTCOME_SCHEMA.fields
          if f.name not in (SOURCE_KEY, ITEM_ID) and f.name in outcomes.columns],
        F.col(KEY).alias(SOURCE_KEY),
        F.col(KEY).alias(ITEM_ID),
    )


# --- the stage ---------------------------------------------------------------------------

def ready(ctx: Context) -> DataFrame:
    """Instructions whose responses are all in and all judged by the sandbox."""
    responded = ctx.lake.read(PROGRESS).where(F.col("stage") == F.lit(Source.RESPOND.value)).select(
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
