"""judge: the base model, 7-shot, answers whether a seed candidate's docstring is good.

Input: dedup cluster representatives. Yes -> the function is a seed; No and
unparseable answers are rejects with their reason (never a silent No).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.core.readers import REPRESENTATIVES, functions_through
from jobs.stages.generation import (
    GenerationSettings,
    llm_stage,
    one_answer_each,
)
from schemas import QUALITY
from udfs.llm import Engine
from udfs.parse import parse_judge
from udfs.prompts import judge_prompt

NAME = "judge"
KEY = "function_id"


def judge_rows(records: list[dict[str, Any]], engine: Engine,
               settings: GenerationSettings) -> list[dict[str, Any]]:
    """Outcome rows for a group of candidates (plain Python; unit-tested with a fake engine)."""
    prompts, _ = settings.inputs()
    texts = [judge_prompt(r["code"], prompts, r[KEY]) for r in records]
    return one_answer_each(records, engine, settings, NAME, KEY, texts, _verdict)


def _verdict(row: dict[str, Any], raw: str) -> None:
    good = parse_judge(raw)
    row.update(good=good, raw_output=raw)
    if good is None:
        row.update(reject_reason="judge_unparseable", reject_detail=raw[:200])
    elif not good:
        row.update(reject_reason="judge_no", reject_detail="docstring judged not useful")


def read(ctx: Context) -> DataFrame:
    """Dedup's cluster representatives: the seed candidates."""
    return functions_through(ctx, REPRESENTATIVES).select(KEY, "code")


STAGE = llm_stage(NAME, QUALITY, KEY, read, judge_rows, verdicts=True)
