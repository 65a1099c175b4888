"""instruct: Self-OSS-Instruct step 2, concepts + category + difficulty -> a coding task."""

from __future__ import annotations

import hashlib
from typing import Any

from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.stages.generation import (
    GenerationSettings,
    llm_stage,
    one_answer_each,
)
from schemas import CONCEPTS, INSTRUCTIONS
from schemas.outcome import Reason, Source, reject
from udfs.llm import Engine
from udfs.parse import parse_instruction
from udfs.prompts import instruct_prompt, pick_category_difficulty

NAME = Source.INSTRUCT
KEY = "seed_id"


def instruction_id(seed_id: str, instruction: str) -> str:
    return hashlib.sha256(f"{seed_id}\n{instruction}".encode()).hexdigest()


def instruction_rows(records: list[dict[str, Any]], engine: Engine,
                     settings: GenerationSettings) -> list[dict[str, Any]]:
    prompts, _ = settings.inputs()
    picks = [pick_category_difficulty(r[KEY], prompts, settings.categories) for r in records]
    texts = [
        instruct_prompt(list(r["concepts"]), category, difficulty, prompts, r[KEY])
        for r, (category, difficulty) in zip(records, picks, strict=True)
    ]
    extra = [{"category": category, "difficulty": difficulty, "concepts": list(r["concepts"])}
             for r, (category, difficulty) in zip(records, picks, strict=True)]
    return one_answer_each(records, engine, settings, NAME, KEY, texts, _instruction, extra)


def _instruction(row: dict[str, Any], samples: list[str]) -> None:
    raw = samples[0]
    instruction = parse_instruction(raw)
    if instruction is None:
        row.update(reject(Reason.NO_INSTRUCTION, raw[:200]))
    else:
        row.update(instruction=instruction, instruction_id=instruction_id(row[KEY], instruction))


def read(ctx: Context) -> DataFrame:
    return ctx.lake.read(CONCEPTS).select(KEY, "concepts")


STAGE = llm_stage(NAME, INSTRUCTIONS, KEY, read, instruction_rows)
