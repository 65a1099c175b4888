"""concepts: Self-OSS-Instruct step 1, seed function -> programming concepts."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.core.readers import SEEDS, functions_through
from jobs.stages.generation import (
    GenerationSettings,
    failure,
    lineage,
    llm_stage,
    sampling,
)
from schemas import CONCEPTS
from udfs.llm import Engine
from udfs.parse import parse_concepts
from udfs.prompts import concepts_prompt, prompt_version

NAME = "concepts"
KEY = "seed_id"


def concept_rows(records: list[dict[str, Any]], engine: Engine,
        settings: GenerationSettings) -> list[dict[str, Any]]:
    prompts, cfg = settings.prompts, settings.sampling
    assert prompts is not None and cfg is not None
    params = sampling(cfg, "concepts")
    texts = [concepts_prompt(r["code"], prompts, r[KEY]) for r in records]
    made_by = lineage(engine, prompt_version("concepts", prompts), params)
    rows = []
    for record, generation in zip(records, engine.generate(texts, params), strict=True):
        seed = record[KEY]
        row: dict[str, Any] = {KEY: seed, "source_key": seed, "item_id": seed, **made_by}
        if not generation.ok:
            rows.append({**row, **failure(generation)})
            continue
        raw = generation.completions[0].text
        concepts = parse_concepts(raw)
        row.update(concepts=concepts, raw_output=raw)
        if not concepts:
            row.update(reject_reason="no_concepts", reject_detail=raw[:200])
        rows.append(row)
    return rows


def read(ctx: Context) -> DataFrame:
    """The seeds: representatives the judge accepted."""
    return functions_through(ctx, SEEDS).selectExpr(f"function_id AS {KEY}", "code")


STAGE = llm_stage(NAME, CONCEPTS, KEY, read, concept_rows)
