"""One run id per nightly job: every task passes the job's id (`--run-id`, or
$SELFALIGN_RUN_ID), so `runs`, `status` and `report` show the night as one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.cli import main as cli_main
from jobs.core.context import RUN_ID_ENV, chosen_run_id
from jobs.tools.report import collect_summary
from jobs.tools.status import render_status
from schemas import RUNS
from tests.lakes import new_context
from tests.paths import BENCHMARKS, REPO
from tests.stack_rows import stack_row, write_stack

GOOD = 'def double(x):\n    """Twice x."""\n    return x * 2\n'


def settings(tmp: Path) -> list[str]:
    pairs = [f"lake.root={tmp / 'lake'}", f"input.path={tmp / 'in'}", f"spark.ivy_dir={REPO / '.ivy'}",
             f"benchmarks.dir={BENCHMARKS}"]
    return [arg for pair in pairs for arg in ("--set", pair)]


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        cli_main(list(args))
    return int(done.value.code or 0)


@pytest.mark.spark
def test_the_tasks_of_one_night_are_one_run(spark: SparkSession, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_stack(tmp_path / "in" / "a.parquet", [stack_row(GOOD, path="a.py")])
    # Another night first, then two tasks of tonight's job: one by flag, one by variable.
    assert run_cli("run", "--stages", "extract", "--no-status", "--run-id", "night-0",
                   *settings(tmp_path)) == 0
    write_stack(tmp_path / "in" / "b.parquet", [stack_row(GOOD.replace("double", "twice"), path="b.py")])
    assert run_cli("run", "--stages", "extract", "--no-status", "--run-id", "1234567",
                   *settings(tmp_path)) == 0
    monkeypatch.setenv(RUN_ID_ENV, "1234567")
    assert run_cli("run", "--stages", "decontaminate", "--no-status", *settings(tmp_path)) == 0
    monkeypatch.delenv(RUN_ID_ENV)

    ctx = new_context(tmp_path / "lake", f"benchmarks.dir={BENCHMARKS}")
    runs = ctx.lake.read(RUNS).where("status = 'succeeded'")
    assert sorted((r["run_id"], r["stage"]) for r in runs.collect()) == [
        ("1234567", "decontaminate"), ("1234567", "extract"), ("night-0", "extract")]
    summary = collect_summary(ctx)  # the newest run: the whole night, not its last task
    assert summary["run_id"] == "1234567"
    assert [s["stage"] for s in summary["run"]] == ["extract", "decontaminate"]
    lines = {line.split()[0]: line.split() for line in render_status(ctx).splitlines()[1:] if line.strip()}
    assert lines["extract"][4] == lines["decontaminate"][4] == "1234567"


def test_a_run_id_is_checked_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", "--stages", "extract", "--run-id", "night 1; rm -rf") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run id 'night 1; rm -rf'" in err[0], err


def test_the_run_id_comes_from_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUN_ID_ENV, "from-env")
    assert chosen_run_id("from-flag") == "from-flag"
    assert chosen_run_id() == "from-env"
    monkeypatch.delenv(RUN_ID_ENV)
    first, second = chosen_run_id(), chosen_run_id()
    assert first != second  # a new one each time otherwise


@pytest.mark.spark
def test_status_shows_who_holds_the_lake(spark: SparkSession, tmp_path: Path):
    from jobs.core.lease import lake_lease

    ctx = new_context(tmp_path / "lake", "run.lease_seconds=60")
    ctx.run_id = "night-2026-12-06"
    with lake_lease(ctx):
        shown = render_status(ctx)
    assert "lease: held by run night-2026-12-06 on " in shown
    assert "lease:" not in render_status(ctx)  # released with the run
