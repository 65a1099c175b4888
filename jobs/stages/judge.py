"""judge: the base model, 7-shot, answers whether a seed candidate's docstring is good.

Input: dedup cluster representatives. Yes -> the function is a seed; No and
unparseable answers are rejects with their reason (never a silent No).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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
from schemas import FUNCTIONS, QUALITY
from udfs.llm import Engine
from udfs.parse import parse_judge
from udfs.prompts import PromptSet, judge_prompt, prompt_version

STAGE = "judge"
KEY = "function_id"
OUTCOME_SCHEMA = outcome_schema(QUALITY)


def judge_rows(records: list[dict[str, Any]], engine: Engine, prompts: PromptSet,
               cfg: Any) -> list[dict[str, Any]]:
    """Outcome rows for a group of candidates (plain Python; unit-tested with a fake engine)."""
    params = sampling(cfg, "judge")
    texts = [judge_prompt(r["code"], prompts, r[KEY]) for r in records]
    made_by = lineage(engine, prompt_version("judge", prompts), params)
    rows = []
    for record, generation in zip(records, engine.generate(texts, params), strict=True):
        fid = record[KEY]
        row: dict[str, Any] = {KEY: fid, "source_key": fid, "item_id": fid, **made_by}
        if not generation.ok:
            rows.append({**row, **failure(generation)})
            continue
        raw = generation.completions[0].text
        good = parse_judge(raw)
        row.update(good=good, raw_output=raw)
        if good is None:
            row.update(reject_reason="judge_unparseable", reject_detail=raw[:200])
        elif not good:
            row.update(reject_reason="judge_no", reject_detail="docstring judged not useful")
        rows.append(row)
    return rows


def transform(candidates: DataFrame, ctx: Context, prompts: PromptSet) -> DataFrame:
    cfg = ctx.cfg.generation.judge
    return generate(ctx, candidates, KEY, OUTCOME_SCHEMA,
                    lambda records, engine: judge_rows(records, engine, prompts, cfg))


def pending(ctx: Context) -> DataFrame:
    from jobs.stages.dedup import seeds as representatives

    return pending_input(ctx, STAGE, representatives(ctx).select(KEY, "code"), KEY)


def run(ctx: Context) -> StageSummary:
    require_engine(ctx.cfg, STAGE)
    prompts = load_stage_prompts(ctx.cfg)
    return run_stage(ctx, STAGE, QUALITY, pending(ctx), KEY,
                     transform=lambda part: transform(part, ctx, prompts),
                     chunk_rows=ctx.cfg.generation.chunk_rows, verdicts=True)


def seeds(ctx: Context) -> DataFrame:
    """Functions the judge kept: the seeds of Self-OSS-Instruct (FUNCTIONS columns)."""
    good = ctx.lake.read(QUALITY).where(F.col("good")).select(KEY)
    return ctx.lake.read(FUNCTIONS).join(good, on=KEY, how="inner")
