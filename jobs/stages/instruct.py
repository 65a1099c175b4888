"""instruct: Self-OSS-Instruct step 2, concepts + category + difficulty -> a coding task."""

from __future__ import annotations

import hashlib
from typing import Any

from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.stages.generation import (
    GenerationSettings,
    failure,
    lineage,
    llm_stage,
    sampling,
)
from schemas import CONCEPTS, INSTRUCTIONS
from udfs.llm import Engine
from udfs.parse import parse_instruction
from udfs.prompts import instruct_prompt, pick_category_difficulty, prompt_version

NAME = "instruct"
KEY = "seed_id"


def instruction_id(seed_id: str, instruction: str) -> str:
    return hashlib.sha256(f"{seed_id}\n{instruction}".encode()).hexdigest()


def instruction_rows(records: list[dict[str, Any]], engine: Engine,
        settings: GenerationSettings) -> list[dict[str, Any]]:
    prompts, cfg = settings.prompts, settings.sampling
    assert prompts is not None and cfg is not None
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


def read(ctx: Context) -> DataFrame:
    return ctx.lake.read(CONCEPTS).select(KEY, "concepts")


STAGE = llm_stage(NAME, INSTRUCTIONS, KEY, read, instruction_rows)
