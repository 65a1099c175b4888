"""respond: n sampled responses per instruction, each with its own tests.

Every sample is kept in `responses`; one missing its code or tests is also a
reject (`response_missing_parts`), and one whose tests cannot fail (no assert, no
TestCase) is a `no_tests` reject, so the funnel shows them; `execute` skips both.
"""

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
    row_seed,
    sampling,
)
from schemas import INSTRUCTIONS, RESPONSES
from udfs.llm import Engine
from udfs.parse import parse_response, unrunnable_reason
from udfs.prompts import PromptSet, prompt_version, respond_prompt

STAGE = "respond"
KEY = "instruction_id"
OUTCOME_SCHEMA = outcome_schema(RESPONSES)


def response_id(instruction_id: str, index: int) -> str:
    return hashlib.sha256(f"{instruction_id}#{index}".encode()).hexdigest()


def response_rows(records: list[dict[str, Any]], engine: Engine, prompts: PromptSet,
                  cfg: Any, base_seed: int) -> list[dict[str, Any]]:
    params = [sampling(cfg, "respond", row_seed(r[KEY], base_seed)) for r in records]
    texts = [respond_prompt(r["instruction"], prompts) for r in records]
    version = prompt_version("respond", prompts)
    rows: list[dict[str, Any]] = []
    for record, param, generation in zip(records, params, engine.generate(texts, params), strict=True):
        iid = record[KEY]
        made_by = lineage(engine, version, param)
        if not generation.ok:
            rows.append({KEY: iid, "source_key": iid, "item_id": iid, **made_by, **failure(generation)})
            continue
        for index, completion in enumerate(generation.completions):
            parsed = parse_response(completion.text)
            rid = response_id(iid, index)
            row: dict[str, Any] = {
                "response_id": rid, KEY: iid, "sample_index": index, "response": completion.text,
                "code": parsed.code or None, "tests": parsed.tests or None,
                "missing": list(parsed.missing),
                "finish_reason": completion.finish_reason,
                "completion_tokens": completion.completion_tokens,
                "source_key": iid, "item_id": rid, **made_by,
            }
            if not parsed.runnable:
                row.update(**unrunnable_reason(parsed))
            rows.append(row)
    return rows


def transform(instructions: DataFrame, ctx: Context, prompts: PromptSet) -> DataFrame:
    cfg = ctx.cfg.generation.respond
    base_seed = ctx.cfg.run.seed
    return generate(ctx, instructions, KEY, OUTCOME_SCHEMA,
                    lambda records, engine: response_rows(records, engine, prompts, cfg, base_seed))


def pending(ctx: Context) -> DataFrame:
    return pending_input(ctx, STAGE, ctx.lake.read(INSTRUCTIONS).select(KEY, "instruction"), KEY)


def run(ctx: Context) -> StageSummary:
    require_engine(ctx.cfg, STAGE)
    prompts = load_stage_prompts(ctx.cfg)
    return run_stage(ctx, STAGE, RESPONSES, pending(ctx), KEY,
                     transform=lambda part: transform(part, ctx, prompts),
                     chunk_rows=ctx.cfg.generation.chunk_rows, verdicts=True)
