"""The local session's JVM settings (jobs/core/session.py) against Spark's and the JVM's
defaults, on the same work in the same run: the compiled-class cache (4,000 against
Spark's 100), the collector (serial against G1, the JVM's choice on this machine) and
interpreted projections (no generated code), each alone and all together.

Each variant runs in a fresh process (a fresh JVM, as a nightly job starts): the seed
stages (extract -> dedup) on the sample corpus, `--runs` times, each on a new lake, as a
long-lived driver (a test worker, a notebook) runs them again. Printed per run: wall
seconds, the machine's busy CPU seconds (/proc/stat: run it with nothing else busy), and
how many classes Spark compiled (Janino); then each variant over the defaults.

    .venv/bin/python bench/local_jvm.py [--files 200] [--runs 2]
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
SPARK_CACHE = "spark.extra.spark.sql.codegen.cache.maxEntries=100"  # Spark's default
G1 = "spark.extra.spark.driver.extraJavaOptions=-XX:+UseG1GC"  # the JVM's choice here
CODEGEN = "spark.extra.spark.sql.codegen.factoryMode=FALLBACK"  # Spark's default
VARIANTS = {
    "defaults": [SPARK_CACHE, G1, CODEGEN],
    "cache": [G1, CODEGEN],
    "serial": [SPARK_CACHE, CODEGEN],
    "interpret": [SPARK_CACHE, G1],
    "selfalign": [],
}


def busy_cpu_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def child(work: Path, runs: int, variant: str) -> None:
    """One fresh driver: `runs` seed-stage runs, one JSON line per run."""
    from pyspark.sql import SparkSession

    from jobs.cli import main as cli_main

    settings = [f"input.path={work / 'input'}", f"spark.ivy_dir={REPO / '.ivy'}", *VARIANTS[variant]]
    for run in range(runs):
        lake = [f"lake.root={work / f'lake-{variant}-{run}'}"]
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


def measure(work: Path, runs: int, variant: str) -> list[dict[str, float]]:
    command = [sys.executable, __file__, "--child", str(work), "--runs", str(runs), "--variant", variant]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"bench run failed:\n{done.stderr[-3000:]}")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    # The counter is cumulative per JVM: per-run compilations are the differences.
    for before, after in zip([{"compiled": 0}, *results], results, strict=False):
        after["new_classes"] = after["compiled"] - before["compiled"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="The local session's JVM settings against the defaults")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", type=Path)
    parser.add_argument("--variant", choices=VARIANTS, default="selfalign")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.child:
        child(args.child, args.runs, args.variant)
        return
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "input").mkdir()
        pq.write_table(pq.read_table(SAMPLE).slice(0, args.files), work / "input" / "part-0.parquet")
        results = {variant: measure(work, args.runs, variant) for variant in VARIANTS}
    print(f"seed stages on {args.files} files, {args.runs} runs per fresh driver (run 0: a fresh JVM)")
    print("run  variant    wall_s  cpu_s  classes_compiled  wall/defaults  cpu/defaults")
    for run in range(args.runs):
        base = results["defaults"][run]
        for variant, rows in results.items():
            row = rows[run]
            print(f"{run:>3}  {variant:<9}  {row['wall']:6.1f}  {row['cpu']:5.1f}  {row['new_classes']:>16}"
                  f"  {row['wall'] / base['wall']:13.2f}  {row['cpu'] / base['cpu']:12.2f}")


if __name__ == "__main__":
    main()
