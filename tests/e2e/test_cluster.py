"""The seed stages on a real Spark standalone cluster, launched as users launch them: a
master and two one-core workers as separate JVMs, `spark-submit` from outside the
checkout, the project shipped as the built wheel, a Python that cannot import the
checkout, the Delta jars shipped from the local cache (no Maven at test time).

Each comparison differs on one axis only, against one local-mode run on this process's
Spark (4.2, lake on local disk) that all of them share:
  - the cluster's tables (the same Spark) equal local mode's: cluster against local;
  - the tables of a local run on object storage (s3a://, this process) equal them:
    storage;
  - under `make test`, the tables of a local run on Spark 4.0 with Delta 4.0 (Databricks
    17.x LTS, EMR 8; the `selfalign` command from the venv make builds for it, which
    SELFALIGN_SPARK40_PYTHON names) equal them: Spark version. Without that venv those
    tests skip.
The cluster and the Spark 4.0 run are subprocesses started first; the two local runs on
4.2 run in this process meanwhile (the machine has two cores, and the cluster run mostly
waits on its many small Delta jobs).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pyspark
import pytest
import yaml

from jobs.core.config import load_config
from jobs.core.registry import stage_named
from jobs.core.runner import run
from jobs.core.session import DELTA_CATALOG, DELTA_EXTENSION, cached_jars
from tests.spark_cluster import (
    SPARK_HOME,
    StandaloneCluster,
    spark_env,
    standalone_cluster,
    stop_group,
)
from tests.tables import snapshot
from tests.wheel import REPO, built_wheel, isolated_python

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SEED_STAGES = ("extract", "decontaminate", "typecheck", "dedup")
# Every table the seed stages write on this input, each non-empty (runs is compared apart:
# its rows carry clocks and run ids).
TABLES = ("functions", "rejects", "progress", "decontamination", "typecheck", "minhashes", "clusters")
INPUT_FILES = 150  # of the committed sample corpus: every seed table non-empty
SAMPLE = REPO / "data" / "stack_sample" / "stack_sample.parquet"
LAUNCHER = Path(__file__).with_name("wheel_launcher.py")
SUBMIT_TIMEOUT_S = 900


SPARK40_PYTHON = os.environ.get("SELFALIGN_SPARK40_PYTHON")


@dataclass(frozen=True)
class Spark40Run:
    lake: Path
    failure: str | None  # None: the run succeeded; else its exit and its log's tail


@dataclass(frozen=True)
class Lakes:
    cluster: Path  # the standalone cluster, on this process's Spark (4.2)
    local: Path  # local mode in this process (4.2), on local disk: what all are compared with
    s3a: str  # local mode in this process, lake and input on a local S3 API (tests/s3_server.py)
    bucket: str
    spark40: Spark40Run | None  # local mode on Spark 4.0 + Delta 4.0, where SPARK40_PYTHON is set
    origins: dict[str, Any]  # wheel_launcher's record: driver and executors
    shipped: Path  # the wheel, as spark-submit shipped it
    python: Path  # the isolated interpreter driver and executors ran


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    with standalone_cluster(tmp_path_factory.mktemp("cluster"), workers=2, cores=1) as running:
        yield running


def delta_jars() -> list[str]:
    jars = cached_jars(load_config(None, [f"spark.ivy_dir={REPO / '.ivy'}"]).spark)
    if not jars:
        pytest.skip("Delta jars are not cached in .ivy: run `python -m jobs.core.session` once")
    return [jar.removeprefix("file://") for jar in jars]


def sample_input(folder: Path) -> Path:
    folder.mkdir()
    pq.write_table(pq.read_table(SAMPLE).slice(0, INPUT_FILES), folder / "part-0.parquet")
    return folder / "part-0.parquet"


def write_config(path: Path, settings: dict[str, str]) -> Path:
    """`section.key: value` pairs as the nested YAML file an operator ships with --files."""
    nested: dict[str, dict[str, str]] = {}
    for dotted, value in settings.items():
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(nested))
    return path


def submit_command(cluster: StandaloneCluster, python: Path, shipped: Path, launcher: Path,
                   config: Path) -> list[str]:
    conf = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.pyspark.python": str(python),
        "spark.pyspark.driver.python": str(python),
        # Start tasks only once both executors are up, so both run some.
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.sql.shuffle.partitions": "4",  # as the local session (conf/local.yaml)
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.ui.enabled": "false",
        "spark.log.level": "WARN",
    }
    return [
        str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.master_url,
        "--jars", ",".join(delta_jars()), "--py-files", str(shipped),
        *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
        str(launcher), "run", "--stages", ",".join(SEED_STAGES), "--no-status",
        "--config", config.name,
    ]


@pytest.fixture(scope="module")
def lakes(cluster: StandaloneCluster, lake_context, benchmarks_dir: Path, spark, s3,
          tmp_path_factory: pytest.TempPathFactory) -> Lakes:
    tmp = tmp_path_factory.mktemp("from-wheel")
    wheel = built_wheel(tmp / "build")
    python = isolated_python(tmp / "venv")
    job = tmp / "job"  # spark-submit's working directory, outside the checkout
    job.mkdir()
    # Spark puts only .zip/.egg/.jar of --py-files on the executors' sys.path
    # (pyspark's SparkContext.PACKAGE_EXTENSIONS); a pure-Python wheel is a zip archive.
    shipped = Path(shutil.copy(wheel, job / f"{wheel.stem}.zip"))
    launcher = Path(shutil.copy(LAUNCHER, job / "launch.py"))
    settings = {"input.path": str(sample_input(tmp / "input")),
                "benchmarks.dir": str(benchmarks_dir)}
    config = write_config(job / "pipeline.yaml", {**settings, "lake.root": str(tmp / "lake-cluster")})
    record = tmp / "origins.json"
    env = {**spark_env(), "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "SELFALIGN_IMPORT_RECORD": str(record)}
    log = tmp / "spark-submit.log"
    spark40 = None
    with log.open("wb") as out, ExitStack() as running:
        submit = subprocess.Popen(submit_command(cluster, python, shipped, launcher, config),
                                  cwd=job, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        running.callback(stop_group, submit)
        if SPARK40_PYTHON:
            spark40_log = running.enter_context((tmp / "spark40.log").open("wb"))
            spark40_settings = {**settings, "lake.root": str(tmp / "lake-spark40")}
            spark40 = subprocess.Popen(spark40_command(SPARK40_PYTHON, spark40_settings), cwd=tmp,
                                       env=spark40_env(), stdin=subprocess.DEVNULL,
                                       stdout=spark40_log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            running.callback(stop_group, spark40)
        # Local mode in this process meanwhile: first on object storage, lake and input on
        # s3a:// (the "tables equal the local path's"), then on local disk.
        bucket = s3.new_bucket(spark)
        s3.client().upload_file(settings["input.path"], bucket, "stack/part-0.parquet")
        on_s3 = lake_context(f"s3a://{bucket}/lake", f"input.path=s3a://{bucket}/stack",
                             f"benchmarks.dir={benchmarks_dir}")
        for name in SEED_STAGES:
            run(stage_named(name), on_s3)
        ctx = lake_context(tmp / "lake-local", *(f"{k}={v}" for k, v in settings.items()))
        for name in SEED_STAGES:
            run(stage_named(name), ctx)
        # The Spark 4.0 run's outcome is its tests' to judge: the cluster's do not depend on it.
        spark40_run = None if spark40 is None else Spark40Run(
            tmp / "lake-spark40", outcome(spark40, tmp / "spark40.log"))
        submit.wait(timeout=SUBMIT_TIMEOUT_S)
    assert submit.returncode == 0, log.read_text(errors="replace")[-6000:] + cluster.logs()
    return Lakes(tmp / "lake-cluster", tmp / "lake-local", f"s3a://{bucket}/lake", bucket,
                 spark40_run, json.loads(record.read_text()), shipped, python)


def outcome(process: subprocess.Popen[bytes], log: Path) -> str | None:
    """None where the process exits 0 within SUBMIT_TIMEOUT_S, else how it ended and its log's tail."""
    try:
        code = process.wait(timeout=SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_group(process)
        return f"still running after {SUBMIT_TIMEOUT_S} s:\n" + log.read_text(errors="replace")[-6000:]
    return None if code == 0 else f"exit {code}:\n" + log.read_text(errors="replace")[-6000:]


def spark40_command(python: str, settings: dict[str, str]) -> list[str]:
    return [python, "-m", "jobs.cli", "run", "--stages", ",".join(SEED_STAGES), "--no-status",
            *(f"--set={key}={value}" for key, value in {**settings, "spark.ivy_dir": str(REPO / ".ivy")}.items())]


def spark40_env() -> dict[str, str]:
    """The cluster's loopback environment, less its SPARK_HOME: that venv finds its own
    Spark. It runs this checkout's code (whatever checkout that venv was installed from)."""
    env = {key: value for key, value in spark_env().items() if key != "SPARK_HOME"}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def local_tables(lakes: Lakes, spark) -> Callable[[str], list[tuple[str, ...]]]:
    """The local run's tables, read once for the comparisons that share them."""
    return functools.cache(lambda table: snapshot(spark, lakes.local, table))


@pytest.fixture(scope="module")
def spark40_lake(lakes: Lakes) -> Path:
    if lakes.spark40 is None:
        pytest.skip("SELFALIGN_SPARK40_PYTHON is not set: no Spark 4.0 run to compare")
    assert lakes.spark40.failure is None, f"the Spark 4.0 run failed: {lakes.spark40.failure}"
    return lakes.spark40.lake


def test_driver_and_executors_import_the_project_only_from_the_wheel(lakes: Lakes):
    executors = lakes.origins["executors"]
    for origins in [lakes.origins["driver"], *executors]:
        assert origins["executable"] == str(lakes.python)
        for package in ("jobs", "udfs"):
            path = Path(origins[package])
            assert lakes.shipped.name in path.parts, path
            assert not path.is_relative_to(REPO)
        assert origins["source_dirs"] == []
        assert not [finder for finder in origins["meta_path"] if "editable" in finder]
    # Both executors ran the probe, each from its own worker's work dir (the wheel copy
    # it imports from is the one Spark fetched there).
    # An executor's cwd is <cluster>/work-<i>/<app id>/<executor id>.
    assert {Path(o["cwd"]).parents[1].name for o in executors} == {"work-0", "work-1"}
    assert all(Path(o["jobs"]).is_relative_to(o["cwd"]) for o in executors)


@pytest.mark.parametrize("table", TABLES)
def test_cluster_tables_equal_local_mode(lakes: Lakes, local_tables, spark, table: str):
    on_cluster = snapshot(spark, lakes.cluster, table)
    assert on_cluster, f"{table} is empty: the comparison would prove nothing"
    assert on_cluster == local_tables(table)


@pytest.mark.parametrize("table", (*TABLES, "inputs"))
def test_tables_on_s3_equal_the_local_paths(lakes: Lakes, local_tables, spark, table: str):
    on_s3 = snapshot(spark, lakes.s3a, table)
    assert on_s3, f"{table} is empty: the comparison would prove nothing"
    on_disk = local_tables(table)
    if table == "inputs":  # the same file at its two addresses: the same size
        assert [row[0] for row in on_s3] == [repr(f"s3a://{lakes.bucket}/stack/part-0.parquet")]
        assert [row[1] for row in on_s3] == [row[1] for row in on_disk]
        return
    assert on_s3 == on_disk


def test_the_s3_tables_are_delta_tables_in_the_bucket(lakes: Lakes, s3):
    keys = s3.keys(lakes.bucket, "lake/")
    assert "lake/functions/_delta_log/00000000000000000000.json" in keys
    assert any(k.startswith("lake/functions/part-") and k.endswith(".parquet") for k in keys)


@pytest.mark.parametrize("table", (*TABLES, "inputs"))
def test_spark_4_0_tables_equal_spark_4_2s(spark40_lake: Path, local_tables, spark, table: str):
    on_spark40 = snapshot(spark, spark40_lake, table)
    assert on_spark40, f"{table} is empty: the comparison would prove nothing"
    assert on_spark40 == local_tables(table)


def test_the_version_comparison_is_spark_4_0_against_this_spark():
    if SPARK40_PYTHON is None:
        pytest.skip("SELFALIGN_SPARK40_PYTHON is not set: no Spark 4.0 run to compare")
    version = subprocess.run([SPARK40_PYTHON, "-c", "import pyspark; print(pyspark.__version__)"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert version.startswith("4.0."), version
    assert not pyspark.__version__.startswith("4.0."), "local mode here must run the other Spark"


def stage_counts(spark, lake: Path) -> set[tuple[Any, ...]]:
    runs = spark.read.format("delta").load(str(lake / "runs")).where("status = 'succeeded'")
    return {tuple(r) for r in runs.select("stage", "rows_in", "rows_out", "rows_rejected").collect()}


def test_each_stage_succeeded_with_local_mode_counts(lakes: Lakes, spark):
    on_cluster = stage_counts(spark, lakes.cluster)
    assert {row[0] for row in on_cluster} == set(SEED_STAGES)
    assert on_cluster == stage_counts(spark, lakes.local)


def test_each_stage_succeeded_on_spark_4_0_with_4_2s_counts(lakes: Lakes, spark40_lake: Path, spark):
    on_spark40 = stage_counts(spark, spark40_lake)
    assert {row[0] for row in on_spark40} == set(SEED_STAGES)
    assert on_spark40 == stage_counts(spark, lakes.local)
