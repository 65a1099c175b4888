"""The lake, its input and the export on object storage: a real S3 API on 127.0.0.1
(tests/s3_server.py), reached through hadoop-aws's S3A as users' clusters reach S3.

Two `selfalign run`s started together on one lake (local, and s3a://) must end with one
run done, the other refused by the lease, and only the winner's rows; the export to
s3a:// must write the files it writes to a local folder, byte for byte. (The seed stages
on an s3a:// lake and input, compared with local mode's tables, run beside the
standalone cluster in tests/e2e/test_cluster.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from jobs.core.lake import Lake
from jobs.stages.export import write_dataset
from tests.s3_server import S3Server
from tests.tables import snapshot
from tests.unit.test_export import small_files
from tests.wheel import REPO

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SAMPLE = REPO / "data" / "stack_sample" / "stack_sample.parquet"
RACE_FILES = 40  # enough that extract keeps functions


@dataclass(frozen=True)
class Race:
    """Two `selfalign run`s started together on one lake: their exit codes and output."""

    lake: str
    codes: list[int]
    outputs: list[str]

    @property
    def refused(self) -> str:
        return self.outputs[self.codes.index(2)]


@pytest.fixture(scope="module")
def s3_env(s3: S3Server) -> Iterator[S3Server]:
    """The AWS SDK environment (pyarrow's S3 client reads it) for this module only."""
    saved = {key: os.environ.get(key) for key in s3.env()}
    os.environ.update(s3.env())
    yield s3
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _sample(folder: Path, files: int) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(pq.read_table(SAMPLE).slice(0, files), folder / "part-0.parquet")
    return folder / "part-0.parquet"


@pytest.fixture(scope="module")
def races(spark, s3_env: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Race]:
    """`selfalign run --until extract` raced twice on a local lake and twice on an s3a://
    lake, all four processes started together (on two cores the refused runs stop right
    after their JVM starts). A few input files: the race is about the lake, not the work."""
    tmp = tmp_path_factory.mktemp("race")
    local_input = _sample(tmp / "input", RACE_FILES)
    bucket = s3_env.new_bucket(spark)
    places = {"local": str(tmp / "lake"), "s3a": f"s3a://{bucket}/lake"}
    env = {**os.environ, **s3_env.env(), "PYTHONUNBUFFERED": "1"}
    env.pop("SELFALIGN_RUN_ID", None)
    started = {}
    for where, lake in places.items():
        config = _config(tmp / f"{where}.yaml", lake, {
            "input": {"path": str(local_input.parent)},
            "spark": {"ivy_dir": str(REPO / ".ivy"), "s3a_jars": True, "extra": s3_env.spark_extra(bucket)}})
        started[where] = [_start(config, env, tmp / f"{where}-{i}.log") for i in range(2)]
    races = {}
    for where, pair in started.items():
        codes = [process.wait(timeout=600) for process, _ in pair]
        races[where] = Race(places[where], codes, [log.read_text(errors="replace") for _, log in pair])
    return races


@pytest.mark.parametrize("where", ["local", "s3a"])
def test_two_runs_started_together_one_works_one_refuses(races: dict[str, Race], spark, where: str):
    race = races[where]
    assert sorted(race.codes) == [0, 2], race.outputs
    assert f"lake {race.lake} is in use by run " in race.refused and " since " in race.refused
    assert "Traceback" not in race.refused and "[extract] start" not in race.refused
    # Only the run that worked wrote: one run id in the run log and the ledgers.
    for table in ("runs", "progress", "functions", "inputs"):
        frame = Lake(spark, race.lake).peek(table)
        assert frame is not None, table
        assert len({row["run_id"] for row in frame.select("run_id").collect()}) == 1, table
    # ... and both lakes hold the same rows: the winner's extract of the same files.
    if where == "s3a":
        assert snapshot(spark, race.lake, "functions") == snapshot(spark, races["local"].lake, "functions")


EXPORT_ROWS = [
    {"instruction": f"Write function number {i}.", "response": f"def f{i}():\n    return {i}\n",
     "instruction_id": f"{i:04x}", "response_id": f"r{i}", "seed_id": f"s{i}", "repo": "acme/x",
     "path": "x.py", "hexsha": "0" * 40, "licenses": ["MIT"], "concepts": ["loops"],
     "category": "function", "difficulty": "easy", "model": "m", "prompt_version": "v1",
     "sampling": "{}", "instruction_model": "m", "instruction_prompt_version": "v1",
     "sanitizing": "none"}
    for i in range(300)
]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_to_s3_writes_the_files_it_writes_locally(s3_env: S3Server, tmp_path: Path, fmt: str):
    bucket = s3_env.new_bucket()
    cfg = small_files(0.2, 120)
    write_dataset(iter(EXPORT_ROWS), tmp_path / "out", fmt, cfg)
    # A stale shard of an earlier export in the bucket is removed, as it is locally.
    s3_env.client().put_object(Bucket=bucket, Key="sft/train-00009.parquet", Body=b"old")
    write_dataset(iter(EXPORT_ROWS), f"s3a://{bucket}/sft", fmt, cfg)

    local = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    # Deleting the stale shard makes pyarrow keep a zero-byte `sft/` directory marker,
    # which S3 listings and readers (Spark, datasets) treat as the folder, not a file.
    remote = {key.removeprefix("sft/"): s3_env.client().get_object(Bucket=bucket, Key=key)["Body"].read()
              for key in s3_env.keys(bucket, "sft/") if key != "sft/"}
    assert len(local) >= 4 and not any(name.startswith(".") for name in local)
    assert remote == local


def _config(path: Path, lake: str, settings: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"lake": {"root": lake}, **settings}))
    return path


def _start(config: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, Path]:
    command = [sys.executable, "-m", "jobs.cli", "run", "--until", "extract", "--no-status",
               "-c", str(config)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return process, log
