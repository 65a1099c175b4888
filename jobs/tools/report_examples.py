"""The report's examples: a few kept SFT pairs and a few rejects of every reason, each
traced back to the seed function and source file it came from.

Everything is a bounded query: the pairs a `limit`, the rejects up to PER_REASON per
(stage, reason) by a window, texts clipped in Spark before they are collected, and the
lineage looked up by the few ids those rows name (`isin` filters that Delta can skip
files on), never a join that reads a whole table into the driver.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.core.registry import stage_order
from schemas.outcome import Source

PAIRS = 5
PER_REASON = 3
INSTRUCTION_CHARS = 800
RESPONSE_CHARS = 1500
DETAIL_CHARS = 400
# A cut text ends at its last line break when one is this close to the cut: code reads
# better ending on a whole line than half-way through a token.
LINE_SLACK = 0.25

# What a reject's source_key is, per stage: the input key the stage reads. (item_id is
# less regular: extract names a function `hexsha:function_id`, respond a response, or its
# instruction when the whole generation failed.)
FILE, FUNCTION, INSTRUCTION, RESPONSE = "hexsha", "function_id", "instruction_id", "response_id"
TRACE_BY: dict[str, str] = {
    Source.EXTRACT.value: FILE,
    Source.DECONTAMINATE.value: FUNCTION,
    Source.TYPECHECK.value: FUNCTION,
    Source.DEDUP.value: FUNCTION,
    Source.JUDGE.value: FUNCTION,
    Source.CONCEPTS.value: FUNCTION,  # seed_id: the seed's function id
    Source.INSTRUCT.value: FUNCTION,
    Source.RESPOND.value: INSTRUCTION,
    Source.EXECUTE.value: RESPONSE,
    Source.SELECT.value: INSTRUCTION,
}


def _clipped(name: str, limit: int) -> list[Column]:
    """The column's first `limit` characters, and whether there was more."""
    return [F.substring(F.col(name), 1, limit).alias(name),
            (F.coalesce(F.length(F.col(name)), F.lit(0)) > limit).alias(f"{name}_clipped")]


def clip(text: str | None, clipped: bool) -> str | None:
    """A text Spark cut at its limit, ended sensibly (at a line break near the cut) and
    marked as cut."""
    if text is None or not clipped:
        return text
    line = text.rfind("\n")
    if line >= len(text) * (1 - LINE_SLACK):
        text = text[:line]
    return text.rstrip() + "\n…"


# --- the rows ------------------------------------------------------------------------

def _pairs(sft: DataFrame | None, run_id: str | None) -> list[dict[str, Any]]:
    if sft is None:
        return []
    # The reported night's pairs first; then any, in id order (the same every time).
    tonight = F.coalesce(F.col("run_id") == F.lit(run_id), F.lit(False))
    rows = (sft.orderBy(tonight.desc(), F.col("instruction_id"))
            .select("instruction_id", "run_id", *_clipped("instruction", INSTRUCTION_CHARS),
                    *_clipped("response", RESPONSE_CHARS))
            .limit(PAIRS).collect())
    return [{"instruction_id": r["instruction_id"], "run_id": r["run_id"],
             "instruction": clip(r["instruction"], r["instruction_clipped"]),
             "response": clip(r["response"], r["response_clipped"])} for r in rows]


def _rejects(rejects: DataFrame | None, run_id: str | None) -> list[dict[str, Any]]:
    if rejects is None:
        return []
    tonight = F.coalesce(F.col("run_id") == F.lit(run_id), F.lit(False))
    first = Window.partitionBy("stage", "reason").orderBy(tonight.desc(), F.col("item_id"))
    rows = (rejects.select("item_id", "stage", "reason", "source_key", "run_id",
                           *_clipped("detail", DETAIL_CHARS))  # clipped before the shuffle
            .withColumn("_n", F.row_number().over(first))
            .where(F.col("_n") <= PER_REASON)
            .collect())
    ordered = sorted(rows, key=lambda r: (stage_order(r["stage"]), r["reason"], r["_n"]))
    return [{"stage": r["stage"], "reason": r["reason"], "item_id": r["item_id"],
             "source_key": r["source_key"], "run_id": r["run_id"],
             "detail": clip(r["detail"], r["detail_clipped"])} for r in ordered]


# --- lineage -------------------------------------------------------------------------

@dataclass
class Lineage:
    """What the few sampled ids lead to, looked up once per table."""

    instruction_of: dict[str, str] = field(default_factory=dict)  # response -> instruction
    seed_of: dict[str, str] = field(default_factory=dict)  # instruction -> seed function
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # function id -> source
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # hexsha -> source


def _lookup(table: DataFrame | None, key: str, ids: Iterable[str], *columns: str) -> list[Any]:
    wanted = sorted({i for i in ids if i})
    if table is None or not wanted or not {key, *columns} <= set(table.columns):
        return []
    return table.where(F.col(key).isin(wanted)).select(key, *columns).collect()


def _source(row: Any) -> dict[str, Any]:
    return {"repo": row["repo"], "path": row["path"], "hexsha": row["hexsha"],
            "licenses": list(row["licenses"] or [])}


def look_up(tables: dict[str, DataFrame | None], traced: list[tuple[str, str]]) -> Lineage:
    """Follow (kind, id) pairs down the chain: response -> instruction -> seed function;
    a file (hexsha) to any function extracted from it."""
    found = Lineage()
    ids = {kind: {key for k, key in traced if k == kind} for kind in (FILE, FUNCTION, INSTRUCTION, RESPONSE)}
    for r in _lookup(tables.get("responses"), RESPONSE, ids[RESPONSE], INSTRUCTION):
        found.instruction_of[r[RESPONSE]] = r[INSTRUCTION]
    ids[INSTRUCTION] |= set(found.instruction_of.values())
    for r in _lookup(tables.get("instructions"), INSTRUCTION, ids[INSTRUCTION], "seed_id"):
        found.seed_of[r[INSTRUCTION]] = r["seed_id"]
    ids[FUNCTION] |= set(found.seed_of.values())
    functions = tables.get("functions")
    for r in _lookup(functions, FUNCTION, ids[FUNCTION], "name", "hexsha", "repo", "path", "licenses"):
        found.functions[r[FUNCTION]] = {"function_id": r[FUNCTION], "function_name": r["name"], **_source(r)}
    wanted = sorted(ids[FILE])
    if functions is not None and wanted:
        # A file can sit in several repos (The Stack keeps each copy): name the first.
        first = F.min_by(F.struct("repo", "path", "hexsha", "licenses"), F.concat_ws("/", "repo", "path"))
        for r in (functions.where(F.col(FILE).isin(wanted)).groupBy(FILE).agg(first.alias("s"))
                  .collect()):
            found.files[r[FILE]] = _source(r["s"])
    return found


def trace(kind: str, key: str, lineage: Lineage) -> dict[str, Any] | None:
    """The seed function (or, for a file, the source file) an id leads to; None when the
    chain breaks (a row of a table that is gone, a file none of whose functions was kept)."""
    if kind == FILE:
        return lineage.files.get(key)
    if kind == RESPONSE:
        key, kind = lineage.instruction_of.get(key, ""), INSTRUCTION
    if kind == INSTRUCTION:
        key = lineage.seed_of.get(key, "")
    return lineage.functions.get(key)


def _reject_trace(reject: dict[str, Any]) -> tuple[str, str] | None:
    kind = TRACE_BY.get(reject["stage"])
    return None if kind is None or not reject["source_key"] else (kind, reject["source_key"])


def collect_examples(tables: dict[str, DataFrame | None], run_id: str | None = None) -> dict[str, Any]:
    """A few kept pairs and rejects, each with the lineage it traces to (JSON-ready)."""
    pairs = _pairs(tables.get("sft"), run_id)
    rejects = _rejects(tables.get("rejects"), run_id)
    wanted = [(INSTRUCTION, p["instruction_id"]) for p in pairs]
    wanted += [t for t in map(_reject_trace, rejects) if t is not None]
    lineage = look_up(tables, wanted)
    for pair in pairs:
        pair["lineage"] = trace(INSTRUCTION, pair["instruction_id"], lineage)
    for reject in rejects:
        found = _reject_trace(reject)
        reject["lineage"] = trace(*found, lineage) if found else None
        if reject["stage"] == Source.EXTRACT.value and ":" in reject["item_id"]:
            # A function extract dropped is in no table: its id is all there is of it.
            reject["function_id"] = reject["item_id"].split(":", 1)[1]
    return {"pairs": pairs, "rejects": rejects, "per_reason": PER_REASON}
