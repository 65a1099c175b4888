"""concepts: Self-OSS-Instruct step 1, seed function -> programming concepts."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.core.readers import SEEDS, functions_through
from jobs.stages.generation import (
    GenerationSettings,
    llm_stage,
    one_answer_each,
)
from schemas import CONCEPTS
from schemas.outcome import Reason, Source, reject
from udfs.llm import Engine
from udfs.parse import parse_concepts
from udfs.prompts import concepts_prompt

NAME = Source.CONCEPTS
KEY = "seed_id"


def concept_rows(records: list[dict[str, Any]], engine: Engine,
                 settings: GenerationSettings) -> list[dict[str, Any]]:
    prompts, _ = settings.inputs()
    texts = [concepts_prompt(r["code"], prompts, r[KEY]) for r in records]
    return one_answer_each(records, engine, settings, NAME, KEY, texts, _concepts)


def _concepts(row: dict[str, Any], samples: list[str]) -> None:
    raw = samples[0]
    concepts = parse_concepts(raw)
    row.update(concepts=concepts, raw_output=raw)
    if not concepts:
        row.update(reject(Reason.NO_CONCEPTS, raw[:200]))


def read(ctx: Context) -> DataFrame:
    """The seeds: representatives the judge accepted."""
    return functions_through(ctx, SEEDS).selectExpr(f"function_id AS {KEY}", "code")


STAGE = llm_stage(NAME, CONCEPTS, KEY, read, concept_rows)
