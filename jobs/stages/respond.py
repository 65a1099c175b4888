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
from jobs.stages.generation import (
    GenerationSettings,
    failure,
    lineage,
    llm_stage,
    row_seed,
    sampling,
    truncated,
)
from schemas import INSTRUCTIONS, RESPONSES
from schemas.outcome import ITEM_ID, SOURCE_KEY, Source
from udfs.llm import CUT_AT_MAX_TOKENS, Engine
from udfs.parse import parse_response, unrunnable_reason
from udfs.prompts import prompt_version, respond_prompt

NAME = Source.RESPOND
KEY = "instruction_id"


def response_id(instruction_id: str, index: int) -> str:
    return hashlib.sha256(f"{instruction_id}#{index}".encode()).hexdigest()


def response_rows(records: list[dict[str, Any]], engine: Engine,
                  settings: GenerationSettings) -> list[dict[str, Any]]:
    prompts, cfg = settings.inputs()
    base_seed = settings.seed
    params = [sampling(cfg, NAME, row_seed(r[KEY], base_seed)) for r in records]
    texts = [respond_prompt(r["instruction"], prompts, r[KEY]) for r in records]
    version = prompt_version(NAME, prompts)
    rows: list[dict[str, Any]] = []
    for record, param, generation in zip(records, params, engine.generate(texts, params), strict=True):
        iid = record[KEY]
        made_by = lineage(engine, version, param)
        if not generation.ok:
            rows.append({KEY: iid, SOURCE_KEY: iid, ITEM_ID: iid, **made_by, **failure(generation)})
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
                SOURCE_KEY: iid, ITEM_ID: rid, **made_by,
            }
            if completion.finish_reason == CUT_AT_MAX_TOKENS:
                row.update(**truncated(cfg.max_tokens, completion.text))
            elif not parsed.runnable:
                row.update(**unrunnable_reason(parsed))
            rows.append(row)
    return rows


def read(ctx: Context) -> DataFrame:
    return ctx.lake.read(INSTRUCTIONS).select(KEY, "instruction")


STAGE = llm_stage(NAME, RESPONSES, KEY, read, response_rows, verdicts=True)
