"""`selfalign plan` on a lake: key-only pending counts and the CLI's screen and JSON."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from jobs.cli import main as cli_main
from jobs.tools.plan import make_plan, pending_keys, render_plan
from schemas import RUNS
from tests.lakes import new_context
from tests.planted import plant_seeds

pytestmark = pytest.mark.spark

# Every column that holds source or generated text (or words of it) in any table.
CONTENT = {"content", "code", "docstring", "signature", "imports", "instruction", "response",
           "tests", "raw_output", "concepts", "stdout_tail", "stderr_tail", "matched_text"}
SEEDS = {f"seed_{i}": f"Return x for the case {i}." for i in range(6)}


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("plan") / "lake"
    ctx = new_context(root, "cost.gpu_hour=4")
    plant_seeds(ctx, SEEDS)  # six dedup representatives: the judge's pending input
    # Two earlier nights: the judge kept half of 10 seeds in 100 s on one GPU each night.
    start = datetime(2026, 12, 1, 2, 0)
    rows = []
    for night in range(2):
        began = start + timedelta(days=night)
        rows.append((f"night-{night}", "judge", "succeeded", began, began + timedelta(seconds=100),
                     10, 5, 5, "f" * 16, None, 0, 1, 20_000, 10, 80.0, 90.0, 0.0, 0.11))
    ctx.lake.append(RUNS, spark.createDataFrame(rows, RUNS.schema))
    return ctx, root


def scanned_columns(frame) -> set[str]:
    """Every column the frame's physical plan reads from files."""
    plan = frame._jdf.queryExecution().executedPlan().toString()
    columns: set[str] = set()
    for schema in re.findall(r"ReadSchema: struct<(.*?)>(?:,|\s|$)", plan):
        columns |= {field.split(":", 1)[0] for field in re.split(r",(?![^<]*>)", schema) if field}
    return columns


def test_pending_counts_read_key_and_flag_columns_only(lake):
    ctx, _ = lake
    frames = pending_keys(ctx)
    assert set(frames) >= {"extract", "judge", "execute", "select"}
    for stage, frame in frames.items():
        read = scanned_columns(frame)
        assert read, f"{stage}: no file scan found in its plan"
        assert not read & CONTENT, f"{stage} reads {sorted(read & CONTENT)}"


def test_the_plan_counts_pending_rows_and_prices_them_from_the_last_nights(lake):
    ctx, _ = lake
    plans = {p.stage: p for p in make_plan(ctx)}
    judge = plans["judge"]
    assert (judge.pending, judge.expected_in, judge.expected_out, judge.nights) == (6, 6, 3, 2)
    # 6 seeds x (2 x 90 GPU-seconds / 20 seeds) = 54 GPU-seconds, at 4 per GPU-hour.
    assert judge.gpu_hours == pytest.approx(54 / 3600)
    assert judge.cost == pytest.approx(54 / 3600 * 4, abs=1e-6)
    assert judge.tokens_in == 6 * 2_000 and judge.seconds == pytest.approx(60)
    # The three seeds the judge is expected to keep flow on; concepts has no history.
    assert plans["concepts"].expected_in == 3 and plans["concepts"].expected_out is None
    # The sample corpus is the extract input: 2,000 files, none consumed.
    assert plans["extract"].pending == 2_000


def test_the_cli_prints_json_for_schedulers(lake, capsys):
    _, root = lake
    with pytest.raises(SystemExit) as done:
        cli_main(["plan", "--json", "--set", f"lake.root={root}", "--set", "cost.gpu_hour=4"])
    assert done.value.code == 0
    stages = {s["stage"]: s for s in json.loads(capsys.readouterr().out)["stages"]}
    assert stages["judge"]["expected_out"] == 3 and stages["concepts"]["cost"] is None


def test_the_screen_is_one_screen(lake):
    ctx, _ = lake
    screen = render_plan(make_plan(ctx), ctx.lake.describe())
    assert len(screen.splitlines()) < 25
    judge_line = next(line for line in screen.splitlines() if line.startswith("judge"))
    assert judge_line.split()[:4] == ["judge", "6", "6", "3"]
