"""spark-submit entry of tests/e2e/test_cluster.py: records where the driver and the
executors import the project from, then runs the wheel's own entry point, jobs.submit, as
`spark-submit jobs/submit.py ...` would.

Copied out of the checkout before it runs and imports nothing from it: the project must
come from what spark-submit shipped. The record is written to the JSON file named by
$SELFALIGN_IMPORT_RECORD.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import SparkSession

# Enough tasks that each executor runs some, each long enough that one executor cannot
# take them all.
PROBE_TASKS = 4
PROBE_TASK_S = 1.0


def finder_name(finder: object) -> str:
    kind = finder if isinstance(finder, type) else type(finder)
    return f"{kind.__module__}.{kind.__qualname__}"


def import_origins() -> dict[str, object]:
    """Where this interpreter takes the project from, and what could lead it elsewhere."""
    import jobs
    import udfs

    return {
        "executable": sys.executable,
        # Executors import --py-files by a path relative to their working directory.
        "jobs": os.path.abspath(jobs.__file__ or ""),
        "udfs": os.path.abspath(udfs.__file__ or ""),
        # Directories on sys.path holding the project as source (an editable install's,
        # a checkout's): there must be none.
        "source_dirs": [entry for entry in sys.path
                        if any(os.path.isfile(os.path.join(entry or ".", package, "__init__.py"))
                               for package in ("jobs", "udfs"))],
        # An editable install's finder (a class, like the standard ones) would show here.
        "meta_path": [finder_name(finder) for finder in sys.meta_path],
        "cwd": os.getcwd(),
    }


def probe_executors(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for _ in batches:
        pass
    time.sleep(PROBE_TASK_S)
    yield pd.DataFrame({"origins": [json.dumps(import_origins())]})


def main() -> None:
    spark = SparkSession.builder.getOrCreate()
    tasks = spark.range(0, PROBE_TASKS, numPartitions=PROBE_TASKS)
    rows = tasks.mapInPandas(probe_executors, schema="origins string").collect()
    record = {"driver": import_origins(), "executors": [json.loads(r["origins"]) for r in rows]}
    with open(os.environ["SELFALIGN_IMPORT_RECORD"], "w") as out:
        json.dump(record, out)
    # The CLI reads sys.argv[1:]: run ... --config ..., exactly as the EMR steps pass them.
    runpy.run_module("jobs.submit", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
