"""Benchmark the execute stage end to end: N planted responses -> `executions`, in a temp lake.

Each program is the shape the respond stage produces (a small function and two
asserts); every fifth one fails its second assert. The stage runs as in production:
pending-input query, chunked commits (run.chunk_rows / 10), mapInPandas tasks each
keeping a pool of sandbox processes busy, Delta merges of outcomes, rejects and
progress.

Baseline beside it, on the same machine and programs: the physical bar, a bare
ThreadPoolExecutor of os.cpu_count() workers calling udfs.sandbox.run_program over a
sample of the programs (no Spark, no Delta). The ratio stage/baseline (programs/s)
is what the Spark plumbing keeps of the sandbox's own throughput.

Run: .venv/bin/python bench/execute_bench.py [--n 10000] [--parallelism P]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from udfs.sandbox import Limits, probe_isolation, run_program

REPO = Path(__file__).resolve().parent.parent


def program(i: int) -> tuple[str, str]:
    """(code, tests) of program i; every fifth fails."""
    expected = 3 * i + (1 if i % 5 == 4 else 0)
    code = f"def scale_{i}(values, factor):\n    return [v * factor for v in values]\n"
    tests = (f"assert scale_{i}([], 2) == []\n"
             f"assert scale_{i}([1, {i}], 3) == [3, {expected}]\n")
    return code, tests


def plant(ctx, n: int) -> None:
    from schemas import RESPONSES

    made_by = ("bench-model", "respond-v1", "{}", "bench")
    rows = []
    for i in range(n):
        code, tests = program(i)
        iid = f"instruction-{i // 10:06d}"
        rows.append((f"response-{i:07d}", iid, i % 10, f"```python\n{code}```", code, tests, [],
                     "stop", 64, *made_by))
    ctx.lake.insert_new(RESPONSES, ctx.spark.createDataFrame(rows, RESPONSES.schema))


def baseline(n: int, workers: int, limits: Limits) -> tuple[float, Counter]:
    programs = [code + "\n\n" + tests for code, tests in map(program, range(n))]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        statuses = Counter(pool.map(lambda p: run_program(p, limits).status, programs))
    return time.perf_counter() - start, statuses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="programs to execute")
    parser.add_argument("--parallelism", type=int, default=None,
                        help="sandbox.parallelism (default: executor cores / concurrent tasks)")
    parser.add_argument("--chunk-rows", type=int, default=5000, help="responses per chunk (run.chunk_rows / 10)")
    parser.add_argument("--master", default="local[2]", help="spark.master")
    parser.add_argument("--baseline-n", type=int, default=None,
                        help="programs in the bare-pool baseline (default: min(n, 1000); 0 skips it)")
    parser.add_argument("--keep", action="store_true", help="keep the temp lake")
    args = parser.parse_args(argv)

    from jobs.core import runner
    from jobs.core.config import load_config
    from jobs.core.context import Context
    from jobs.core.runner import run, start
    from jobs.stages import execute
    from schemas import EXECUTIONS

    logging.basicConfig(level=logging.WARNING)
    level = probe_isolation()
    cores = os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="execute-bench-"))
    overrides = [f"lake.root={root / 'lake'}", f"spark.ivy_dir={REPO / '.ivy'}", f"spark.master={args.master}",
                 f"run.chunk_rows={args.chunk_rows * 10}"]
    if args.parallelism:
        overrides.append(f"sandbox.parallelism={args.parallelism}")
    cfg = load_config(None, overrides)
    load_before = os.getloadavg()[0]
    ctx = Context.create(cfg)
    ctx.spark.sparkContext.setLogLevel("ERROR")
    plan = start(execute.STAGE, ctx).settings
    print(f"isolation: {level}, os.cpu_count(): {cores}, master: {args.master}, "
          f"workers per task: {plan.pool_size()} ({plan.describe()}), "
          f"tasks per chunk: {ctx.spark.conf.get('spark.sql.shuffle.partitions')}, "
          f"chunk_rows: {args.chunk_rows}, programs: {args.n}, load avg before: {load_before:.2f}")

    start = time.perf_counter()
    plant(ctx, args.n)
    planted = time.perf_counter() - start
    # The sandbox runs happen while the runner writes a chunk's outcomes to its scratch
    # copy; the rest of the stage's wall time is plumbing (pending input, Delta merges,
    # run log).
    staging: list[float] = []
    write_scratch = runner.write_scratch

    def timed_write(rows, path, partition_by=None):
        began = time.perf_counter()
        write_scratch(rows, path, partition_by)
        if path.endswith(f"/_staging/{execute.STAGE.name}"):  # outcomes, not the pending copy
            staging.append(time.perf_counter() - began)

    runner.write_scratch = timed_write
    start = time.perf_counter()
    summary = run(execute.STAGE, ctx)
    wall = time.perf_counter() - start
    statuses = {r["status"]: r["count"] for r in ctx.lake.read(EXECUTIONS).groupBy("status").count().collect()}
    print(f"planted {args.n} responses in {planted:.1f} s")
    print(f"execute stage: wall {wall:.1f} s (runner {summary.seconds:.1f} s), chunks {summary.chunks}, "
          f"in {summary.rows_in}, out {summary.rows_out}, rejected {summary.rows_rejected}, "
          f"failed {summary.rows_failed}")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    stage_rate = args.n / wall
    ran = sum(staging)
    print(f"stage throughput: {stage_rate:.1f} programs/s; sandbox phase (staging writes) "
          f"{ran:.1f} s = {args.n / ran:.1f} programs/s, plumbing {wall - ran:.1f} s")

    sample = min(args.n, 1000) if args.baseline_n is None else args.baseline_n
    if sample:
        seconds, counts = baseline(sample, cores, Limits.from_settings(cfg.sandbox))
        base_rate = sample / seconds
        print(f"baseline (bare pool of {cores} threads, run_program, {sample} programs): "
              f"{seconds:.1f} s, {base_rate:.1f} programs/s, {dict(sorted(counts.items()))}")
        print(f"ratio stage/baseline: {stage_rate / base_rate:.2f} "
              f"(sandbox phase/baseline: {args.n / ran / base_rate:.2f})")
    print(f"load avg after: {os.getloadavg()[0]:.2f}")
    ctx.spark.stop()
    if args.keep:
        print(f"lake kept at {root / 'lake'}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
