"""judge: the base model, 7-shot, answers whether a seed candidate's docstring alone tells
enough to re-implement the function, and matches its code (the published question; the
docstring is shown apart from the code). Over generation.judge.n samples, Yes wins only
when it outnumbers No.

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
    """Outcome rows for a group of candidates (plain Python; unit-tested with a fake engine).
    Only the first word of an answer counts, so an answer cut by max_tokens still does."""
    prompts, _ = settings.inputs()
    texts = [judge_prompt(r["code"], prompts, r[KEY]) for r in records]
    return one_answer_each(records, engine, settings, NAME, KEY, texts, _verdict, complete_only=False)


def majority(answers: list[bool | None]) -> bool | None:
    """The published rule over the samples taken: Yes only when Yes outnumbers No (a tie
    is No); None when no sample could be read."""
    yes, no = answers.count(True), answers.count(False)
    if not yes and not no:
        return None
    return yes > no


def _verdict(row: dict[str, Any], samples: list[str]) -> None:
    answers = [parse_judge(sample) for sample in samples]
    good = majority(answers)
    raw = samples[0] if len(samples) == 1 else "\n---\n".join(samples)
    row.update(good=good, raw_output=raw)
    if good is None:
        row.update(reject_reason="judge_unparseable", reject_detail=raw[:200])
    elif not good:
        detail = "docstring judged not enough to re-implement the function, or not matching it"
        if len(samples) > 1:
            detail += f" ({answers.count(True)} Yes, {answers.count(False)} No of {len(samples)})"
        row.update(reject_reason="judge_no", reject_detail=detail)


def read(ctx: Context) -> DataFrame:
    """Dedup's cluster representatives: the seed candidates."""
    return functions_through(ctx, REPRESENTATIVES).select(KEY, "code")


STAGE = llm_stage(NAME, QUALITY, KEY, read, judge_rows, verdicts=True)
