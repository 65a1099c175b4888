"""judge: the base model, 7-shot, answers whether a seed candidate's docstring alone tells
enough to re-implement the function, and matches its code (the published question; the
docstring is shown apart from the code). Over generation.judge.n samples, Yes wins only
when it outnumbers No.

Input: dedup cluster representatives. Yes -> the function is a seed; No and
unparseable answers are rejects with their reason (never a silent No).

generation.judge.template names the prompt file (judge.yaml; judge_published.yaml frames
each function as a GitHub issue, as published) and generation.judge.decision how an
answer is read (udfs.parse.parse_judge: first_word, or count as published).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.readers import REPRESENTATIVES, functions_through
from jobs.core.stage import StageRun
from jobs.stages.generation import (
    GenerationSettings,
    llm_stage,
    one_answer_each,
)
from schemas import QUALITY
from schemas.outcome import Reason, Source, reject
from udfs.llm import Engine
from udfs.parse import JudgeDecision, parse_judge
from udfs.prompts import PromptConfigError, judge_prompt, load_judge

NAME = Source.JUDGE
KEY = "function_id"


def judge_rows(records: list[dict[str, Any]], engine: Engine,
               settings: GenerationSettings) -> list[dict[str, Any]]:
    """Outcome rows for a group of candidates (plain Python; unit-tested with a fake engine).
    Only the first word of an answer counts (or, under decision count, its yes/no counts),
    so an answer cut by max_tokens still does."""
    prompts, cfg = settings.inputs()
    decision: JudgeDecision = getattr(cfg, "decision", "first_word")
    texts = [judge_prompt(r["code"], prompts, r[KEY]) for r in records]

    def verdict(row: dict[str, Any], samples: list[str]) -> None:
        _verdict(row, samples, decision)

    return one_answer_each(records, engine, settings, NAME, KEY, texts, verdict, complete_only=False)


def majority(answers: list[bool | None]) -> bool | None:
    """The published rule over the samples taken: Yes only when Yes outnumbers No (a tie
    is No); None when no sample could be read."""
    yes, no = answers.count(True), answers.count(False)
    if not yes and not no:
        return None
    return yes > no


def _counts(samples: list[str]) -> str:
    lowered = [sample.lower() for sample in samples]
    return f'{sum(s.count("yes") for s in lowered)} "yes", {sum(s.count("no") for s in lowered)} "no"'


def _verdict(row: dict[str, Any], samples: list[str], decision: JudgeDecision = "first_word") -> None:
    answers = [parse_judge(sample, decision) for sample in samples]
    good = majority(answers)
    raw = samples[0] if len(samples) == 1 else "\n---\n".join(samples)
    row.update(good=good, raw_output=raw)
    if good is None:
        row.update(reject(Reason.JUDGE_UNPARSEABLE, raw[:200]))
    elif not good:
        detail = "docstring judged not enough to re-implement the function, or not matching it"
        if len(samples) > 1:
            detail += f" ({answers.count(True)} Yes, {answers.count(False)} No of {len(samples)})"
        if decision == "count":
            detail += f" (answer counted: {_counts(samples)})"
        row.update(reject(Reason.JUDGE_NO, detail))


def read(ctx: Context) -> DataFrame:
    """Dedup's cluster representatives: the seed candidates."""
    return functions_through(ctx, REPRESENTATIVES).select(KEY, "code")


_LLM_STAGE = llm_stage(NAME, QUALITY, KEY, read, judge_rows, verdicts=True)


def settings(run: StageRun[GenerationSettings]) -> GenerationSettings:
    """The LLM stage's settings with the judge prompt generation.judge.template names."""
    base = _LLM_STAGE.settings(run)
    cfg = run.cfg
    prompts, _ = base.inputs()
    try:
        judge = load_judge(cfg.generation.judge.template, cfg.generation.prompts_dir)
    except PromptConfigError as exc:
        raise StageError(f"{NAME}: generation.judge.template: {exc}") from None
    return replace(base, prompts=replace(prompts, judge=judge))


STAGE = replace(_LLM_STAGE, settings=settings)
