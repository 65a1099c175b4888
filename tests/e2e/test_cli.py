"""The `selfalign` command and `spark-submit jobs/submit.py`, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack_rows import stack_row, write_stack

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

GOOD = 'def double(x):\n    """Twice x."""\n    return x * 2\n'
NO_ARGS = 'def answer():\n    """The answer."""\n    return 42\n'


def run(*args: str, cwd: Path = REPO, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    # spark-submit finds SPARK_HOME with the `python3` on PATH: the venv's, as after `activate`.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_bad_config_is_one_clear_line(tmp_path: Path):
    result = run(str(BIN / "selfalign"), "status", "--set", "dedup.thresh=0.5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "selfalign: error: config: unknown key 'dedup.thresh'"


def test_unknown_stage_is_one_clear_line():
    result = run(str(BIN / "selfalign"), "run", "--stages", "extract,nope")
    assert result.returncode == 2
    assert "unknown stage 'nope'" in result.stderr.strip().splitlines()[-1]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_runs_a_stage(tmp_path: Path):
    src = write_stack(tmp_path / "in" / "p.parquet", [stack_row(GOOD, path="a.py")])
    lake = tmp_path / "lake"
    from jobs.core.sections import SparkConfig
    from jobs.core.session import delta_package

    result = run(str(BIN / "spark-submit"), "--properties-file", "conf/spark-local.conf",
                 "--packages", delta_package(SparkConfig()),
                 "--conf", f"spark.pyspark.python={sys.executable}",
                 "--conf", f"spark.pyspark.driver.python={sys.executable}",
                 "--conf", f"spark.jars.ivy={REPO / '.ivy'}",
                 "jobs/submit.py", "run", "--stages", "extract", "--no-status",
                 "--config", "conf/local.yaml",
                 "--set", f"input.path={src}", "--set", f"lake.root={lake}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (lake / "functions" / "_delta_log").is_dir()
    # One insert-only MERGE added one function: read the committed data files directly.
    import pyarrow.parquet as pq

    rows = [row for path in (lake / "functions").glob("*.parquet")
            for row in pq.read_table(path, columns=["name"]).to_pylist()]
    assert rows == [{"name": "double"}]
