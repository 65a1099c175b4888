"""Spark's cache of compiled query classes: Spark's default size (100) against selfalign's
(jobs/core/session.py), on the same work in the same run.

Each setting runs in a fresh process (a fresh JVM, as a nightly job starts): the seed
stages (extract -> dedup) on the sample corpus, `--runs` times, each on a new lake, as a
long-lived driver (a test worker, a notebook) runs them again. Printed per run: wall
seconds, the machine's busy CPU seconds (/proc/stat: run it with nothing else busy), and
how many classes Spark compiled (Janino); then selfalign's over the default for each.

    .venv/bin/python bench/codegen_cache.py [--files 200] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "stack_sample" / "stack_sample.parquet"
SPARK_DEFAULT = 100  # StaticSQLConf.CODEGEN_CACHE_MAX_ENTRIES


def busy_cpu_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def child(work: Path, runs: int, cache: int | None) -> None:
    """One fresh driver: `runs` seed-stage runs, one JSON line per run."""
    from pyspark.sql import SparkSession

    from jobs.cli import main as cli_main

    settings = [f"input.path={work / 'input'}", f"spark.ivy_dir={REPO / '.ivy'}"]
    if cache is not None:
        settings.append(f"spark.extra.spark.sql.codegen.cache.maxEntries={cache}")
    for run in range(runs):
        lake = [f"lake.root={work / f'lake-{cache}-{run}'}"]
        started, cpu = time.monotonic(), busy_cpu_seconds()
        try:
            cli_main(["run", "--until", "dedup", "--no-status",
                      *(arg for s in [*settings, *lake] for arg in ("--set", s))])
        except SystemExit as done:
            if done.code:
                raise
        session = SparkSession.getActiveSession()
        assert session is not None
        jvm: Any = session.sparkContext._jvm
        compiled = jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME().getCount()
        print(json.dumps({"wall": time.monotonic() - started, "cpu": busy_cpu_seconds() - cpu,
                          "compiled": compiled}), flush=True)


def measure(work: Path, runs: int, cache: int | None) -> list[dict[str, float]]:
    command = [sys.executable, __file__, "--child", str(work), "--runs", str(runs)]
    if cache is not None:
        command += ["--cache", str(cache)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"bench run failed:\n{done.stderr[-3000:]}")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    # The counter is cumulative per JVM: per-run compilations are the differences.
    for before, after in zip([{"compiled": 0}, *results], results, strict=False):
        after["new_classes"] = after["compiled"] - before["compiled"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Spark's compiled-class cache: default size against selfalign's")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", type=Path)
    parser.add_argument("--cache", type=int)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.child:
        child(args.child, args.runs, args.cache)
        return
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "input").mkdir()
        pq.write_table(pq.read_table(SAMPLE).slice(0, args.files), work / "input" / "part-0.parquet")
        default = measure(work, args.runs, SPARK_DEFAULT)
        ours = measure(work, args.runs, None)
    print(f"seed stages on {args.files} files, {args.runs} runs per fresh driver")
    print("run  cache  wall_s  cpu_s  classes_compiled")
    for run, (base, new) in enumerate(zip(default, ours, strict=True)):
        for name, row in (("100", base), ("ours", new)):
            print(f"{run:>3}  {name:>5}  {row['wall']:6.1f}  {row['cpu']:5.1f}  {row['new_classes']:>6}")
        print(f"     ours/100: wall {new['wall'] / base['wall']:.2f}  cpu {new['cpu'] / base['cpu']:.2f}")


if __name__ == "__main__":
    main()
