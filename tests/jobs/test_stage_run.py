"""The runner builds one StageRun per stage run and hands that same object to the stage's
settings and hooks: what the runner knows is read from it, never computed again."""

from __future__ import annotations

from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.runner import cluster_tasks, run
from jobs.core.stage import Stage, StageRun
from schemas import PROGRESS, REJECTS, RUNS, TableSpec
from schemas.outcome import ITEM_ID, SOURCE_KEY, Reason, outcome_schema, reject

pytestmark = pytest.mark.spark

PROBE = TableSpec(
    name="probe_out",
    schema=StructType([StructField("word", StringType(), False), StructField("run_id", StringType(), False)]),
    key=("word",),
    description="a test stage's output",
)
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]


def probe_stage(seen: list[tuple[str, Any]], words: list[str], **declared: Any) -> Stage[dict[str, Any]]:
    """A stage over `words` that keeps words without an 'e' and records what it was handed."""

    def read(ctx: Context) -> DataFrame:
        return ctx.spark.createDataFrame([(w,) for w in words], "word string")

    def settings(this_run: StageRun[dict[str, Any]]) -> dict[str, Any]:
        seen.append(("settings", this_run))
        pending = sorted(r["word"] for r in this_run.pending.collect())
        return {"pending_at_start": pending, "tasks": this_run.tasks}

    def transform(part: DataFrame, settings: dict[str, Any]) -> DataFrame:
        dropped = reject(Reason.TOO_LONG, "has an e")
        return part.select(
            F.col("word"),
            F.col("word").alias(SOURCE_KEY),
            F.col("word").alias(ITEM_ID),
            F.when(F.col("word").contains("e"), F.lit(dropped["reject_reason"])).alias("reject_reason"),
            F.when(F.col("word").contains("e"), F.lit(dropped["reject_detail"])).alias("reject_detail"),
        ).select(*outcome_schema(PROBE).fieldNames()[:-1])

    def before(this_run: StageRun[dict[str, Any]]) -> None:
        seen.append(("before", this_run))

    def after(this_run: StageRun[dict[str, Any]]) -> None:
        seen.append(("after", this_run))

    return Stage(name="probe", output=PROBE, key="word", read=read, settings=settings,
                 transform=transform, before=(before,), after=(after,), **declared)


def test_settings_and_hooks_get_one_run_with_what_the_runner_knows(make_ctx):
    ctx = make_ctx()
    ctx.lake.append(PROGRESS, ctx.spark.createDataFrame(
        [("probe", "alpha", "earlier")], "stage string, input_key string, run_id string"))
    seen: list[tuple[str, Any]] = []
    summary = run(probe_stage(seen, WORDS), ctx)

    assert [phase for phase, _ in seen] == ["settings", "before", "after"]
    assert len({id(this_run) for _, this_run in seen}) == 1  # the same object every time
    this_run = seen[0][1]
    assert this_run.summary is summary
    # The pending input is the runner's: the input less what `progress` already holds.
    assert this_run.settings["pending_at_start"] == sorted(set(WORDS) - {"alpha"})
    assert this_run.settings["tasks"] == cluster_tasks(ctx) == this_run.tasks
    assert (summary.rows_in, summary.rows_out, summary.rows_rejected) == (4, 1, 3)
    kept = [r["word"] for r in ctx.lake.read(PROBE).collect()]
    assert kept == ["gamma"]
    rejects = ctx.lake.read(REJECTS).collect()
    assert {(r["stage"], r["reason"]) for r in rejects} == {("probe", Reason.TOO_LONG.value)}


def test_an_empty_first_input_is_the_stages_one_line_error_inside_its_recorded_run(make_ctx):
    ctx = make_ctx()
    seen: list[tuple[str, Any]] = []
    stage = probe_stage(seen, [], empty_input_error=lambda cfg: "probe: no words at all")
    with pytest.raises(StageError, match=r"^probe: no words at all$"):
        run(stage, ctx)
    runs = ctx.lake.read(RUNS).where(F.col("stage") == "probe")
    assert sorted(r["status"] for r in runs.collect()) == ["failed", "running"]
    assert [phase for phase, _ in seen] == ["settings", "before"]  # the after hooks never ran


def test_a_stage_that_cannot_start_records_nothing(make_ctx):
    ctx = make_ctx()

    def refuse(this_run: StageRun[Any]) -> Any:
        raise StageError("probe: no engine")

    stage = Stage(name="probe", output=PROBE, key="word",
                  read=lambda c: c.spark.createDataFrame([("a",)], "word string"),
                  settings=refuse, transform=lambda df, s: df)
    with pytest.raises(StageError):
        run(stage, ctx)
    assert ctx.lake.read(RUNS).where(F.col("stage") == "probe").isEmpty()
