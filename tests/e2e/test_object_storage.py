"""The lake, its input and the export on object storage: a real S3 API on 127.0.0.1
(tests/s3_server.py), reached through hadoop-aws's S3A as users' clusters reach S3.

The seed stages on an s3a:// lake and input must leave the tables a local-path run
leaves; two `selfalign run`s started together on one lake (local, and s3a://) must end
with one run done, the other refused by the lease, and the tables of one run; the export
to s3a:// must write the files it writes to a local folder, byte for byte.
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

from jobs.core.config import ExportConfig
from jobs.core.registry import stage_named
from jobs.core.runner import run
from jobs.stages.export import write_dataset
from tests.s3_server import S3Server
from tests.tables import snapshot
from tests.wheel import REPO

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SEED_STAGES = ("extract", "decontaminate", "typecheck", "dedup")
TABLES = ("functions", "rejects", "progress", "decontamination", "typecheck", "minhashes",
          "clusters", "inputs")
SAMPLE = REPO / "data" / "stack_sample" / "stack_sample.parquet"
INPUT_FILES = 60  # of the sample: every seed table non-empty


@dataclass(frozen=True)
class Lakes:
    local: Path
    s3a: str
    bucket: str


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


@pytest.fixture(scope="module")
def lakes(spark, s3_env: S3Server, lake_context, benchmarks_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Lakes:
    tmp = tmp_path_factory.mktemp("object-storage")
    local_input = tmp / "input" / "part-0.parquet"
    local_input.parent.mkdir()
    pq.write_table(pq.read_table(SAMPLE).slice(0, INPUT_FILES), local_input)
    bucket = s3_env.new_bucket(spark)
    s3_env.client().upload_file(str(local_input), bucket, "stack/part-0.parquet")

    common = [f"decontaminate.benchmarks_dir={benchmarks_dir}"]
    on_s3 = lake_context(f"s3a://{bucket}/lake", f"input.path=s3a://{bucket}/stack", *common)
    on_disk = lake_context(tmp / "lake", f"input.path={local_input.parent}", *common)
    for name in SEED_STAGES:
        run(stage_named(name), on_s3)
        run(stage_named(name), on_disk)
    return Lakes(tmp / "lake", f"s3a://{bucket}/lake", bucket)


@pytest.mark.parametrize("table", TABLES)
def test_seed_tables_on_s3_equal_the_local_paths(lakes: Lakes, spark, table: str):
    on_s3 = snapshot(spark, lakes.s3a, table)
    assert on_s3, f"{table} is empty: the comparison would prove nothing"
    if table == "inputs":  # the same file, at its two addresses
        assert [row[0] for row in on_s3] == [repr(f"s3a://{lakes.bucket}/stack/part-0.parquet")]
        assert [row[1] for row in on_s3] == [row[1] for row in snapshot(spark, lakes.local, table)]
        return
    assert on_s3 == snapshot(spark, lakes.local, table)


def test_the_tables_are_delta_tables_in_the_bucket(lakes: Lakes, s3_env: S3Server):
    keys = s3_env.keys(lakes.bucket, "lake/")
    assert "lake/functions/_delta_log/00000000000000000000.json" in keys
    assert any(k.startswith("lake/functions/part-") and k.endswith(".parquet") for k in keys)


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
    cfg = ExportConfig(rows_per_file=120, validation_fraction=0.2)
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


def _start(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "jobs.cli", "run", "--until", "extract", "--no-status",
               "-c", str(config)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.mark.parametrize("where", ["local", "s3a"])
def test_two_runs_started_together_one_works_one_refuses(lakes: Lakes, spark, s3_env: S3Server,
                                                         tmp_path: Path, where: str):
    bucket = s3_env.new_bucket(spark)
    lake = str(tmp_path / "lake") if where == "local" else f"s3a://{bucket}/lake"
    sample = pq.read_table(SAMPLE).slice(0, INPUT_FILES)
    (tmp_path / "input").mkdir()
    pq.write_table(sample, tmp_path / "input" / "part-0.parquet")
    settings: dict[str, object] = {
        "input": {"path": str(tmp_path / "input")},
        "spark": {"ivy_dir": str(REPO / ".ivy"), "s3a_jars": True,
                  "extra": s3_env.spark_extra(bucket)}}
    config = _config(tmp_path / "pipeline.yaml", lake, settings)
    env = {**os.environ, **s3_env.env(), "PYTHONUNBUFFERED": "1"}
    env.pop("SELFALIGN_RUN_ID", None)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    runs = [_start(config, env, log) for log in logs]
    codes = [process.wait(timeout=600) for process in runs]
    outputs = [log.read_text(errors="replace") for log in logs]

    assert sorted(codes) == [0, 2], outputs
    refused = outputs[codes.index(2)]
    assert f"lake {lake} is in use by run " in refused and " since " in refused, refused[-3000:]
    assert "Traceback" not in refused
    for table in ("functions", "progress", "rejects", "inputs"):
        got = snapshot(spark, lake, table)
        want = snapshot(spark, lakes.local, table)
        if table == "inputs":  # another copy of the file: the same size
            assert [row[1] for row in got] == [row[1] for row in want]
        elif table in ("progress", "rejects"):
            assert got == [row for row in want if "'extract'" in row], table
        else:
            assert got == want, table
