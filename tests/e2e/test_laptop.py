"""The LLM half of the DAG on a CPU (`--profile laptop`): the transformers engine, batched,
with a tiny model built here. Its answers are nonsense, so this checks the path and the
accounting, not the quality: every stage that got rows called the model, recorded its
tokens, and accounted for every row it took (kept, rejected with a reason, or retried)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from jobs.cli import main as cli_main
from schemas import QUALITY, REJECTS, RUNS
from tests.lakes import new_context
from tests.planted import plant_seeds
from tests.tiny_model import build_tiny_model

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SEEDS = {f"seed_{i}": f"Return x unchanged, case {i}." for i in range(12)}
LLM_STAGES = ("judge", "concepts", "instruct", "respond")


@pytest.fixture(scope="module")
def laptop(spark, tmp_path_factory):
    pytest.importorskip("transformers")
    tmp = tmp_path_factory.mktemp("laptop")
    model = build_tiny_model(tmp / "tiny")
    ctx = new_context(tmp / "lake")
    plant_seeds(ctx, SEEDS)
    settings = [f"lake.root={tmp / 'lake'}", f"llm.model={model}", f"export.out={tmp / 'export'}",
                "cost.input_token_million=1"]

    def run(*stages: str) -> None:
        with pytest.raises(SystemExit) as done:
            cli_main(["run", "--profile", "laptop", *stages, "--no-status",
                      *[arg for setting in settings for arg in ("--set", setting)]])
        assert done.value.code == 0

    run("--stages", "judge")
    judged = ctx.lake.read(REJECTS).where(F.col("stage") == "judge").select("reason").collect()
    # The tiny model cannot say Yes: as if it had, every seed is marked good and the rest
    # of the DAG runs on them.
    ctx.spark.sql(f"UPDATE delta.`{ctx.lake.path(QUALITY)}` SET good = true")
    run("--from", "concepts")
    ended = ctx.lake.read(RUNS).where(F.col("status") == "succeeded").collect()
    latest = {r["stage"]: r for r in sorted(ended, key=lambda r: r["started_at"])}
    return ctx, latest, [r["reason"] for r in judged]


def test_the_judge_read_every_seed_with_the_transformers_engine(laptop):
    ctx, ran, judged = laptop
    judge = ran["judge"]
    assert judge["rows_in"] == len(SEEDS) and ctx.lake.read(QUALITY).count() == len(SEEDS)
    # Nonsense is not a verdict: each seed is rejected, saying why.
    assert len(judged) == len(SEEDS) - judge["rows_out"]
    assert set(judged) <= {"judge_unparseable", "judge_no"}
    assert judge["tokens_in"] > 100 * len(SEEDS)  # the few-shot prompt, counted once per seed
    assert 0 < judge["tokens_out"] <= 4 * len(SEEDS)  # generation.judge.max_tokens = 4
    assert judge["engine_seconds"] > 0 and judge["gpu_seconds"] == 0
    assert judge["cost"] == pytest.approx(judge["tokens_in"] / 1e6, abs=1e-6)


def test_every_model_stage_that_got_rows_recorded_its_tokens_and_lost_none(laptop):
    _, ran, _ = laptop
    assert ran["concepts"]["rows_in"] == len(SEEDS)
    for stage in LLM_STAGES:
        row = ran.get(stage)
        if row is None or not row["rows_in"]:
            continue
        assert row["tokens_in"] > 0 and row["tokens_out"] > 0, stage
        # A verdict-less stage keeps or rejects each input row (respond: n rows per input).
        accounted = row["rows_out"] + row["rows_rejected"] + row["rows_failed"]
        assert accounted >= row["rows_in"], (stage, row)


def test_the_export_step_ends_the_run(laptop):
    _, ran, _ = laptop
    assert "export" in ran and "select" in ran
