"""What a stage run used, recorded in `runs`, and its live progress inside a chunk."""

from __future__ import annotations

import logging
import time

import pytest
from pyspark.sql import functions as F

from jobs.core import progress
from jobs.core.runner import run
from jobs.stages import judge
from schemas import QUALITY, RUNS
from tests.lakes import new_context
from tests.planted import plant_seeds
from tests.stage_engine import StageEngine

pytestmark = pytest.mark.spark

SEEDS = {f"seed_{i}": f"Return x for case number {i}." for i in range(8)}
PRICES = ("cost.input_token_million=1000", "cost.output_token_million=5000", "cost.gpu_hour=2")


class SlowEngine(StageEngine):
    """Answers like the stage engine, a quarter of a second per call: a long chunk."""

    def generate(self, prompts, params):
        time.sleep(0.25)
        return super().generate(prompts, params)


@pytest.fixture(scope="module")
def judged(spark, tmp_path_factory):
    ctx = new_context(tmp_path_factory.mktemp("acct") / "lake",
                      "llm.engine=python:tests.jobs.test_accounting:SlowEngine",
                      "generation.batch_rows=1", *PRICES)
    plant_seeds(ctx, SEEDS)
    logger = logging.getLogger("selfalign")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    level, saved = logger.level, progress.EVERY_SECONDS
    logger.setLevel(logging.INFO)
    progress.EVERY_SECONDS = 0.2
    try:
        summary = run(judge.STAGE, ctx)
    finally:
        progress.EVERY_SECONDS = saved
        logger.setLevel(level)
        logger.removeHandler(handler)
    ended = ctx.lake.read(RUNS).where((F.col("stage") == "judge") & (F.col("status") == "succeeded"))
    return ctx, summary, ended.collect()[0], lines


def test_the_run_row_holds_tokens_engine_time_and_no_gpu(judged):
    ctx, summary, row, _ = judged
    verdicts = ctx.lake.read(QUALITY).count()
    assert verdicts == len(SEEDS)
    # The engine answers one word (a token here) per judged seed at n = 1.
    assert row["tokens_out"] == verdicts
    assert row["tokens_in"] > 50 * verdicts  # the few-shot prompt, counted once per seed
    # Eight calls of a quarter of a second each, spread over the tasks.
    assert row["engine_seconds"] >= 8 * 0.25
    assert row["gpu_seconds"] == 0  # a test double on a CPU holds no GPU
    assert (row["rows_in"], row["rows_failed"], row["chunks"]) == (len(SEEDS), 0, 1)
    assert summary.usage.tokens_out == row["tokens_out"]


def test_the_cost_prices_the_recorded_tokens(judged):
    _, _, row, _ = judged
    expected = row["tokens_in"] / 1e6 * 1000 + row["tokens_out"] / 1e6 * 5000
    assert row["cost"] == pytest.approx(expected, rel=1e-6)


def test_a_live_line_reports_rows_and_tokens_before_the_chunk_commits(judged):
    _, _, _, lines = judged
    live = [line for line in lines if line.startswith("[judge] chunk 1/1:") and "tokens/s" in line]
    assert live, lines
    reported = [line for line in live if "no task has reported yet" not in line]
    assert reported, live
    done = [int(line.split(": ", 1)[1].split(" of ")[0].replace(",", "")) for line in reported]
    assert max(done) >= 1 and all(d <= len(SEEDS) for d in done)
    assert any("left" in line for line in reported)

