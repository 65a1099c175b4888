"""Crash-safety of `selfalign run`, driven as an operator would: a subprocess killed with SIGKILL.

The driver is killed in the middle of a stage, once that stage has committed its first
chunk; the rerun must leave the same tables as an uninterrupted run on the same input
(same keys, no duplicates, nothing missing). Both lakes start from the same planted
seeds, so the runs exercise the chunked generation stages with the test double engine.
Tables are compared on sorted contents without the run id, which differs by design.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jobs import judge
from jobs.cli import main as cli_main
from jobs.config import load_config
from jobs.context import Context
from tests.e2e.test_cli import BIN, REPO
from tests.planted import plant_seeds
from tests.tables import snapshot

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SEEDS = {f"seed_{i}": f"Return x, step {i} of the planted family." for i in range(6)}
SETTINGS = ["llm.engine=python:tests.stage_engine:StageEngine", "generation.chunk_rows=2"]


def planted_lake(lake: Path) -> Context:
    ctx = Context.create(load_config(None, [f"lake.root={lake}", *SETTINGS]))
    plant_seeds(ctx, SEEDS)
    return ctx


def command(lake: Path, *extra: str) -> list[str]:
    sets = [arg for setting in [f"lake.root={lake}", f"spark.ivy_dir={REPO / '.ivy'}", *SETTINGS]
            for arg in ("--set", setting)]
    return [str(BIN / "selfalign"), "run", "--stages", "judge", *extra, *sets]


def environment() -> dict[str, str]:
    # PYTHONPATH: the driver imports the test double engine from tests/ (workers run in REPO).
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run_and_kill(lake: Path, stage: str) -> str:
    """Start a run and SIGKILL the driver once `stage` has committed its first chunk."""
    proc = subprocess.Popen(command(lake, "--no-status"), cwd=REPO, env=environment(), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if f"[{stage}] committed chunk 1/" in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"the run ended before {stage} committed a chunk:\n{''.join(seen)[-4000:]}")
        proc.wait(timeout=60)
        # The JVM exits when its Python parent's pipe closes; wait until no process of the
        # run is left, so nothing can still write to the lake when the rerun starts.
        wait_group_gone(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
    return "".join(seen)


def wait_group_gone(pgid: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail("processes of the killed run outlived it by a minute")


def test_sigkill_mid_stage_then_rerun_equals_uninterrupted_run(spark, tmp_path: Path, capsys):
    killed_lake, clean_lake = tmp_path / "killed", tmp_path / "clean"
    planted_lake(killed_lake)
    clean = planted_lake(clean_lake)

    killed = run_and_kill(killed_lake, "judge")
    assert "[judge] done" not in killed
    done = spark.read.format("delta").load(str(killed_lake / "quality")).count()
    assert 0 < done < len(SEEDS)  # the kill left judge half done

    # The rerun: the same command line, in this process (a warm JVM saves a minute of CI).
    with pytest.raises(SystemExit) as finished:
        cli_main(command(killed_lake)[1:])
    assert finished.value.code == 0
    # The run ends with status: every seed judged, nothing pending.
    status = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
              if line.strip()}
    assert status["quality"][1] == str(len(SEEDS))
    assert status["judge"][3] == "succeeded" and status["judge"][-1] == "0"  # nothing pending

    judge.run(clean)  # the uninterrupted run, on this process's Spark
    for table in ("quality", "rejects", "progress"):
        assert snapshot(spark, killed_lake, table) == snapshot(spark, clean_lake, table), table
    keys = spark.read.format("delta").load(str(killed_lake / "quality")).select("function_id")
    assert keys.count() == keys.distinct().count() == len(SEEDS)
    runs = spark.read.format("delta").load(str(killed_lake / "runs")).where("stage = 'judge'")
    states = [(r["status"], r["rows_in"]) for r in runs.orderBy("started_at", "status").collect()]
    # The killed run never ended; the rerun redid only what the kill left pending.
    assert states == [("running", None), ("running", None), ("succeeded", len(SEEDS) - done)]
