"""`selfalign run` over an unchanged lake: idle stages are skipped with no Spark job, and
any change (a new input file, a commit, another config) makes them check again."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.cli import main as cli_main
from tests.paths import BENCHMARKS, REPO
from tests.stack_rows import stack_row, write_stack

pytestmark = pytest.mark.spark

GOOD = 'def double(x):\n    """Twice x."""\n    return x * 2\n'
GOOD_2 = 'def triple(x):\n    """Thrice x."""\n    return x * 3\n'
RUNS = itertools.count()
UNCHANGED = "[extract] nothing pending (input, tables and config unchanged"


def selfalign_run(spark: SparkSession, capsys: pytest.CaptureFixture[str], tmp: Path,
                  *more: str, stages: str = "extract") -> tuple[str, int]:
    """One `selfalign run --stages ...`: its log, and how many Spark jobs it ran."""
    group = f"test-run-{next(RUNS)}"
    spark.sparkContext.setJobGroup(group, "a test run")
    settings = [f"lake.root={tmp / 'lake'}", f"input.path={tmp / 'in'}", f"spark.ivy_dir={REPO / '.ivy'}",
                f"benchmarks.dir={BENCHMARKS}", *more]
    with pytest.raises(SystemExit) as done:
        cli_main(["run", "--stages", stages, "--no-status", *[a for s in settings for a in ("--set", s)]])
    assert done.value.code == 0
    jobs = len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
    spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    return capsys.readouterr().err, jobs


def test_an_unchanged_lake_skips_without_spark_and_any_change_checks_again(spark, capsys, tmp_path: Path):
    write_stack(tmp_path / "in" / "a.parquet", [stack_row(GOOD, path="a.py")])
    first, jobs = selfalign_run(spark, capsys, tmp_path)
    assert "pending=1" in first and jobs > 0
    # That run committed: no record yet. The next finds nothing pending with Spark, and
    # as it changed nothing, it leaves the record the one after it uses.
    second, jobs = selfalign_run(spark, capsys, tmp_path)
    assert UNCHANGED not in second and "[extract] nothing pending" in second and jobs > 0
    third, jobs = selfalign_run(spark, capsys, tmp_path)
    assert UNCHANGED in third and jobs == 0

    # A new input file: extract runs, and takes only the new file.
    write_stack(tmp_path / "in" / "b.parquet", [stack_row(GOOD_2, path="b.py")])
    fourth, _ = selfalign_run(spark, capsys, tmp_path)
    assert UNCHANGED not in fourth and "pending=1" in fourth
    selfalign_run(spark, capsys, tmp_path)
    assert UNCHANGED in selfalign_run(spark, capsys, tmp_path)[0]

    # A user's commit to a table (here: forget extract's progress) means a real check.
    spark.sql(f"DELETE FROM delta.`{tmp_path / 'lake' / 'progress'}` WHERE stage = 'extract'")
    redone, _ = selfalign_run(spark, capsys, tmp_path)
    assert UNCHANGED not in redone and "pending=2" in redone

    # Another config: checked again (a setting may change what is pending).
    selfalign_run(spark, capsys, tmp_path)
    assert UNCHANGED in selfalign_run(spark, capsys, tmp_path)[0]
    other, _ = selfalign_run(spark, capsys, tmp_path, "extract.max_lines=120")
    assert UNCHANGED not in other and "[extract] nothing pending" in other

    # A record that cannot be read is no record: the stage checks with Spark, and the
    # run writes a good record again.
    (tmp_path / "lake" / "_staging" / "idle-stages.json").write_text("{not json")
    garbled, jobs = selfalign_run(spark, capsys, tmp_path, "extract.max_lines=120")
    assert UNCHANGED not in garbled and jobs > 0
    assert UNCHANGED in selfalign_run(spark, capsys, tmp_path, "extract.max_lines=120")[0]


def test_once_a_stage_works_no_later_stage_is_skipped(spark, capsys, tmp_path: Path):
    """extract and decontaminate are recorded idle; then extract's progress is forgotten
    by a run-time commit nobody records: extract redoes its work, so decontaminate must
    check too, whatever the record said at the start."""
    write_stack(tmp_path / "in" / "a.parquet", [stack_row(GOOD, path="a.py")])
    both = "extract,decontaminate"
    for _ in range(2):
        selfalign_run(spark, capsys, tmp_path, stages=both)
    skipped, jobs = selfalign_run(spark, capsys, tmp_path, stages=both)
    assert skipped.count(UNCHANGED.split("]")[1]) == 2 and jobs == 0

    # Forget extract's work; a decontaminate-only run changes nothing and records
    # decontaminate idle against that state. The next run's extract then works first.
    functions = tmp_path / "lake" / "functions"
    spark.sql(f"DELETE FROM delta.`{tmp_path / 'lake' / 'progress'}` WHERE stage = 'extract'")
    spark.sql(f"DELETE FROM delta.`{functions}`")
    selfalign_run(spark, capsys, tmp_path, stages="decontaminate")  # records decontaminate idle
    log, _ = selfalign_run(spark, capsys, tmp_path, stages=both)
    assert "[extract] start" in log
    # Checked with Spark (its progress already holds the function's id), not skipped.
    assert "[decontaminate] nothing pending" in log and "[decontaminate] nothing pending (input" not in log
