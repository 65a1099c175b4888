"""concepts: Self-OSS-Instruct step 1, seed function -> programming concepts."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.core.runner import StageSummary, outcome_schema, pending_input, run_stage
from jobs.stages.generation import (
    failure,
    generate,
    lineage,
    load_stage_prompts,
    require_engine,
    sampling,
)
from schemas import CONCEPTS
from udfs.llm import Engine
from udfs.parse import parse_concepts
from udfs.prompts import PromptSet, concepts_prompt, prompt_version

STAGE = "concepts"
KEY = "seed_id"
OUTCOME_SCHEMA = outcome_schema(CONCEPTS)


def concept_rows(records: list[dict[str, Any]], engine: Engine, prompts: PromptSet,
                 cfg: Any) -> list[dict[str, Any]]:
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


def transform(seeds: DataFrame, ctx: Context, prompts: PromptSet) -> DataFrame:
    cfg = ctx.cfg.generation.concepts
    return generate(ctx, seeds, KEY, OUTCOME_SCHEMA,
                    lambda records, engine: concept_rows(records, engine, prompts, cfg))


def pending(ctx: Context) -> DataFrame:
    from jobs.stages.judge import seeds

    return pending_input(ctx, STAGE, seeds(ctx).selectExpr(f"function_id AS {KEY}", "code"), KEY)


def run(ctx: Context) -> StageSummary:
    require_engine(ctx.cfg, STAGE)
    prompts = load_stage_prompts(ctx.cfg)
    return run_stage(ctx, STAGE, CONCEPTS, pending(ctx), KEY,
                     transform=lambda part: transform(part, ctx, prompts),
                     chunk_rows=ctx.cfg.generation.chunk_rows)
