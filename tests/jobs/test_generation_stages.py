"""judge -> concepts -> instruct -> respond on local Spark, with engines plugged by config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.readers import runnable
from jobs.core.runner import run
from jobs.stages import concepts, instruct, judge, respond
from schemas import (
    CONCEPTS,
    ERRORS,
    INSTRUCTIONS,
    PROGRESS,
    QUALITY,
    REJECTS,
    RESPONSES,
)
from schemas.outcome import Reason
from tests.lakes import new_context
from tests.planted import plant_seeds
from udfs.prompts import prompt_version

pytestmark = pytest.mark.spark

STAGES = (judge, concepts, instruct, respond)
ENGINE = "llm.engine=python:tests.stage_engine:StageEngine"

SEEDS = {
    "plain": "Return the value unchanged.",
    "bad": "judged_bad",
    "weird": "judged_weird",
    "untested": "Return x. no_tests_please",
    "flaky": "Return x. flaky_here",
    "rambling": "Return x. endless_concepts",
    "verbose": "Return x. endless_answer",
}


def make(tmp: Path, *overrides: str) -> Context:
    return new_context(tmp / "lake", *overrides)


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    ctx = make(tmp, ENGINE, "generation.respond.n=3")
    plant_seeds(ctx, SEEDS)
    summaries = [run(stage.STAGE, ctx) for stage in STAGES]
    return ctx, summaries


def rejects(ctx, stage: str) -> dict[str, int]:
    rows = ctx.lake.read(REJECTS).where(F.col("stage") == stage).groupBy("reason").count().collect()
    return {r["reason"]: r["count"] for r in rows}


def test_four_tables_filled_with_lineage(generated):
    ctx, summaries = generated
    assert [s.rows_in for s in summaries] == [7, 5, 4, 4]
    quality = {r["good"] for r in ctx.lake.read(QUALITY).collect()}
    assert quality == {True, False, None}
    assert rejects(ctx, "judge") == {Reason.JUDGE_NO: 1, Reason.JUDGE_UNPARSEABLE: 1}
    assert ctx.lake.read(CONCEPTS).count() == 4
    assert ctx.lake.read(INSTRUCTIONS).count() == 4
    row = ctx.lake.read(RESPONSES).first()
    assert row["model"] == ctx.cfg.llm.model and row["prompt_version"] == prompt_version("respond")
    assert json.loads(row["sampling"])["n"] == 3 and json.loads(row["sampling"])["temperature"] == 0.7


def test_samples_missing_tests_are_kept_and_rejected(generated):
    ctx, _ = generated
    responses = ctx.lake.read(RESPONSES)
    # plain, untested and verbose made it through; flaky failed transiently.
    assert responses.count() == 9
    assert responses.where(F.size("missing") > 0).count() == 3
    assert rejects(ctx, "respond") == {Reason.RESPONSE_MISSING_PARTS: 3, Reason.TRUNCATED: 3}


def test_only_complete_generations_count(generated):
    """An output cut by max_tokens (finish reason "length") is a `truncated` reject at
    every stage, and the sandbox never sees a cut response."""
    ctx, _ = generated
    assert rejects(ctx, "concepts") == {Reason.TRUNCATED: 1}
    [detail] = [r["detail"] for r in ctx.lake.read(REJECTS).where(F.col("stage") == "concepts").collect()]
    assert detail.startswith("cut at max_tokens=1536: ...") and "and so on" in detail
    cut = ctx.lake.read(RESPONSES).where(F.col("finish_reason") == "length")
    assert cut.count() == 3 and cut.where(F.col("code").isNull()).count() == 0  # parsed, yet cut
    assert runnable(ctx.lake.read(RESPONSES)).where(F.col("finish_reason") == "length").count() == 0
    assert runnable(ctx.lake.read(RESPONSES)).count() == 3


def test_transient_failures_are_logged_and_retried_next_run(generated):
    ctx, summaries = generated
    errors = ctx.lake.read(ERRORS).where(F.col("stage") == "respond").collect()
    assert len(errors) == 1 and errors[0]["error"].startswith("timed out")
    assert summaries[-1].rows_failed == 1
    done = ctx.lake.read(PROGRESS).where(F.col("stage") == "respond").count()
    assert done == 3  # the flaky instruction is still pending
    again = run(respond.STAGE, ctx)
    assert again.rows_in == 1 and again.rows_failed == 1
    assert ctx.lake.read(RESPONSES).count() == 9  # nothing duplicated

    # A later run that would be its run.max_attempts-th failure gives up: a reject, not a retry.
    capped = new_context(ctx.lake.root, ENGINE, "generation.respond.n=3", "run.max_attempts=2")
    last = run(respond.STAGE, capped)
    assert (last.rows_in, last.rows_failed, last.rows_rejected) == (1, 0, 1)
    gave_up = ctx.lake.read(REJECTS).where(F.col("reason") == Reason.GAVE_UP_AFTER_RETRIES).collect()
    assert [r["stage"] for r in gave_up] == ["respond"]
    assert gave_up[0]["detail"].startswith("failed in 2 runs; last error: timed out")
    assert ctx.lake.read(PROGRESS).where(F.col("stage") == "respond").count() == 4


def test_rerun_generates_nothing_new(generated):
    ctx, _ = generated
    before = {t.name: ctx.lake.read(t).count() for t in (QUALITY, CONCEPTS, INSTRUCTIONS)}
    assert [run(stage.STAGE, ctx).rows_in for stage in STAGES[:3]] == [0, 0, 0]
    assert {t.name: ctx.lake.read(t).count() for t in (QUALITY, CONCEPTS, INSTRUCTIONS)} == before


def test_no_engine_configured_stops_with_clear_message(spark, tmp_path):
    ctx = make(tmp_path)
    with pytest.raises(StageError, match=r"judge: .*llm\.engine"):
        run(judge.STAGE, ctx)
    assert not ctx.lake.exists(QUALITY) or ctx.lake.read(QUALITY).count() == 0
