"""instruct: Self-OSS-Instruct step 2, concepts + category + difficulty -> a coding task."""

from __future__ import annotations

import hashlib
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
from schemas import CONCEPTS, INSTRUCTIONS
from udfs.llm import Engine
from udfs.parse import parse_instruction
from udfs.prompts import PromptSet, instruct_prompt, pick_category_difficulty, prompt_version

STAGE = "instruct"
KEY = "seed_id"
OUTCOME_SCHEMA = outcome_schema(INSTRUCTIONS)


def instruction_id(seed_id: str, instruction: str) -> str:
    return hashlib.sha256(f"{seed_id}\n{instruction}".encode()).hexdigest()


def instruction_rows(records: list[dict[str, Any]], engine: Engine, prompts: PromptSet,
                     cfg: Any) -> list[dict[str, Any]]:
    params = sampling(cfg, "instruct")
    picks = [pick_category_difficulty(r[KEY], prompts) for r in records]
    texts = [
        instruct_prompt(list(r["concepts"]), category, difficulty, prompts, r[KEY])
        for r, (category, difficulty) in zip(records, picks, strict=True)
    ]
    made_by = lineage(engine, prompt_version("instruct", prompts), params)
    rows = []
    generations = engine.generate(texts, params)
    for record, (category, difficulty), generation in zip(records, picks, generations, strict=True):
        seed = record[KEY]
        row: dict[str, Any] = {
            KEY: seed, "source_key": seed, "item_id": seed, "category": category,
            "difficulty": difficulty, "concepts": list(record["concepts"]), **made_by,
        }
        if not generation.ok:
            rows.append({**row, **failure(generation)})
            continue
        raw = generation.completions[0].text
        instruction = parse_instruction(raw)
        if instruction is None:
            row.update(reject_reason="no_instruction", reject_detail=raw[:200])
        else:
            row.update(instruction=instruction, instruction_id=instruction_id(seed, instruction))
        rows.append(row)
    return rows


def transform(concepts: DataFrame, ctx: Context, prompts: PromptSet) -> DataFrame:
    cfg = ctx.cfg.generation.instruct
    return generate(ctx, concepts, KEY, OUTCOME_SCHEMA,
                    lambda records, engine: instruction_rows(records, engine, prompts, cfg))


def pending(ctx: Context) -> DataFrame:
    return pending_input(ctx, STAGE, ctx.lake.read(CONCEPTS).select(KEY, "concepts"), KEY)


def run(ctx: Context) -> StageSummary:
    require_engine(ctx.cfg, STAGE)
    prompts = load_stage_prompts(ctx.cfg)
    return run_stage(ctx, STAGE, INSTRUCTIONS, pending(ctx), KEY,
                     transform=lambda part: transform(part, ctx, prompts),
                     chunk_rows=ctx.cfg.generation.chunk_rows)
