"""GPU scheduling on a real standalone cluster, without GPUs: a worker whose discovery
script announces two fake GPUs, and the real generation path (tests/gpu_probe.py) run
by spark-submit. Each task must see exactly the GPUs Spark assigned it, never one a
concurrent task holds, and the ResourceProfile must ask for llm.tensor_parallel_size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from tests.gpu_probe import ROWS_PER_TASK, TASKS
from tests.spark_cluster import (
    SPARK_HOME,
    StandaloneCluster,
    spark_env,
    standalone_cluster,
    stop_group,
)
from tests.wheel import REPO

pytestmark = [pytest.mark.spark, pytest.mark.slow]

GPUS = ("0", "1")
JOB = REPO / "tests" / "gpu_probe.py"
SUBMIT_TIMEOUT_S = 600


def discovery_script(path: Path) -> Path:
    """What nvidia-smi based scripts print on a machine with two GPUs."""
    path.write_text("#!/bin/sh\n" + "echo '" + json.dumps({"name": "gpu", "addresses": list(GPUS)}) + "'\n")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StandaloneCluster, Path]]:
    root = tmp_path_factory.mktemp("gpu-cluster")
    script = discovery_script(root / "gpus.sh")
    worker_conf = {"spark.worker.resource.gpu.amount": str(len(GPUS)),
                   "spark.worker.resource.gpu.discoveryScript": str(script)}
    # One worker, two cores: two tasks at once on one executor that holds both GPUs.
    with standalone_cluster(root, workers=1, cores=2, worker_conf=worker_conf) as cluster:
        yield cluster, script


@pytest.fixture(scope="module")
def observed(gpu_cluster: tuple[StandaloneCluster, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Any]:
    cluster, script = gpu_cluster
    tmp = tmp_path_factory.mktemp("gpu-job")
    conf = {
        "spark.executor.resource.gpu.amount": str(len(GPUS)),
        "spark.executor.resource.gpu.discoveryScript": str(script),
        "spark.task.resource.gpu.amount": "1",
        "spark.executor.cores": "2",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # The probe engine is tests.gpu_probe, imported by name on the executors.
        "spark.executorEnv.PYTHONPATH": str(REPO),
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.ui.enabled": "false",
        "spark.log.level": "WARN",
    }
    command = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.master_url,
               *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
               str(JOB), str(tmp / "observed.json")]
    env = {**spark_env(), "PYTHONPATH": str(REPO)}
    log = tmp / "spark-submit.log"
    with log.open("wb") as out:
        submit = subprocess.Popen(command, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            submit.wait(timeout=SUBMIT_TIMEOUT_S)
        finally:
            stop_group(submit)
    assert submit.returncode == 0, log.read_text(errors="replace")[-6000:] + cluster.logs()
    return {**json.loads((tmp / "observed.json").read_text()), "executor_logs": cluster.logs(limit=10**6)}


def per_task(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tasks = {row["task"]: row for row in rows}
    assert len(rows) == TASKS * ROWS_PER_TASK and sorted(tasks) == list(range(TASKS))
    return list(tasks.values())


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["started"] < b["ended"] and b["started"] < a["ended"]


def test_each_task_sees_only_its_own_gpu(observed: dict[str, Any]):
    tasks = per_task(observed["tp1"])
    for task in tasks:
        assert task["assigned"] in GPUS
        assert task["visible"] == task["assigned"]
        # The engine a reused Python worker hands out was built on this task's GPU.
        assert task["engine_devices"] == task["visible"]
    concurrent = [(a, b) for a, b in combinations(tasks, 2) if overlap(a, b)]
    assert concurrent, "no two tasks ran at once: the test proves nothing"
    assert all(a["visible"] != b["visible"] for a, b in concurrent)
    assert {t["visible"] for t in tasks} == set(GPUS)


def test_profile_asks_tensor_parallel_size_gpus_per_task(observed: dict[str, Any]):
    # The application's default is one GPU per task: two come only from the profile.
    tasks = per_task(observed["tp2"])
    for task in tasks:
        assert sorted(task["assigned"].split(",")) == list(GPUS)
        assert sorted(task["visible"].split(",")) == list(GPUS)
        assert task["engine_devices"] == task["visible"]
    # Each task holds both GPUs, so they ran one at a time.
    assert not [pair for pair in combinations(tasks, 2) if overlap(*pair)]


def test_a_request_no_executor_can_meet_is_refused_on_the_driver(observed: dict[str, Any]):
    assert "llm.tensor_parallel_size=3" in observed["refused"]
    assert "spark.executor.resource.gpu.amount=2" in observed["refused"]


def test_pinning_is_in_the_executor_log(observed: dict[str, Any]):
    assert "selfalign: task GPUs 0: CUDA_VISIBLE_DEVICES=0" in observed["executor_logs"]
    assert "selfalign: task GPUs 1: CUDA_VISIBLE_DEVICES=1" in observed["executor_logs"]
    assert "selfalign: task GPUs 0,1: CUDA_VISIBLE_DEVICES=0,1" in observed["executor_logs"]
