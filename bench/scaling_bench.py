"""Does cost grow linearly with the input? Spark's own numbers, from real stage runs.

Two measurements, each on deterministic variants of the 2,000-file sample (every copy
renames its functions, so copies are distinct files with the same shape of work):

scans   The extract stage runs for real (jobs/core/runner.py) at 1, 4 and 16 chunks,
        each in a fresh lake. Afterwards the bench reads every SQL execution of the run
        from Spark's status store (the data behind the SQL tab of the UI: plan graph
        nodes with their scan location and metrics) and sums the rows and file bytes
        scanned from the input corpus, and from the runner's scratch copies. Target:
        input rows and bytes over all chunks <= 1.3x one full read.

growth  extract, decontaminate and typecheck on N and 4N files (`--copies` and 4x that),
        each stage timed; then each is run again with nothing pending, which is the
        stage's fixed cost. Target: time(4N) / time(N) <= 4.5 for extract and typecheck,
        at an N where the fixed cost is under 20% of the run (printed).

stack   The seed stages (extract, decontaminate, typecheck, dedup) on real Python files
        installed on this machine (`selfalign sample`: one file per distinct content,
        nothing planted), at N and 4N files, each in one chunk, then again at N x 4 in
        chunks of --chunk-rows. Prints per stage: rows, seconds, per-core rate (the
        marginal one from N to 4N, and the average at 4N), fixed cost (the fit's
        intercept; a run with nothing pending), growth time(4N)/time(N) (target <= 4.5),
        cost per extra chunk (target <= 3 s), and the projection to The Stack v1
        Python on 100 cores (bench/projection.py states its assumptions; target with
        pyright <= 25 minutes, with the fast checker <= 12).

    .venv/bin/python bench/scaling_bench.py [--copies 2] [--growth-copies 1] [--skip-growth]
    .venv/bin/python bench/scaling_bench.py --stack 7392 [--chunk-rows 7500] [--checkers pyright,ty]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "stack_sample" / "stack_sample.parquet"


def variant_corpus(out: Path, copies: int, files: int | None = None) -> Path:
    """The sample (or its first `files`) `copies` times; copy i renames every function
    `v{i}_name` and gets its own hexsha, so no two copies share a file or a function."""
    table = pq.read_table(SAMPLE)
    table = table.slice(0, files) if files else table
    out.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        hexsha = [f"{copy:04x}{h[4:]}" for h in table.column("hexsha").to_pylist()]
        content = [c.replace("def ", f"def v{copy}_") for c in table.column("content").to_pylist()]
        variant = table.set_column(table.schema.get_field_index("hexsha"), "hexsha", pa.array(hexsha))
        variant = variant.set_column(variant.schema.get_field_index("content"), "content",
                                     pa.array(content))
        pq.write_table(variant, out / f"part-{copy:03d}.parquet", row_group_size=500)
    return out


@dataclass
class Scan:
    execution: int
    description: str
    location: str
    rows: int
    bytes: int


def _number(text: str | None) -> int:
    """A metric as the UI prints it ("2,000", "6.9 MiB") as an int."""
    if not text:
        return 0
    text = text.strip().split("\n")[0].replace(",", "")
    units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    value, _, unit = text.partition(" ")
    try:
        return int(float(value) * units.get(unit.strip(), 1))
    except ValueError:
        return 0


def executions_since(spark: Any, first: int) -> list[Scan]:
    """Every file scan of the SQL executions numbered >= `first` (Spark's status store)."""
    store = spark._jsparkSession.sharedState().statusStore()
    found: list[Scan] = []
    executions = store.executionsList()
    for i in range(executions.size()):
        execution = executions.apply(i)
        number = execution.executionId()
        if number < first:
            continue
        values = store.executionMetrics(number)
        nodes = store.planGraph(number).allNodes()
        for j in range(nodes.size()):
            node = nodes.apply(j)
            desc = node.desc()
            if "Location: " not in desc:
                continue
            location = desc.split("Location: ", 1)[1].split("[", 1)[1].split("]", 1)[0]
            metrics = {}
            node_metrics = node.metrics()
            for k in range(node_metrics.size()):
                metric = node_metrics.apply(k)
                value = values.get(metric.accumulatorId())
                metrics[metric.name()] = value.get() if value.isDefined() else None
            found.append(Scan(number, str(execution.description()), location,
                              _number(metrics.get("number of output rows")),
                              _number(metrics.get("size of files read"))))
    return found


def next_execution(spark: Any) -> int:
    executions = spark._jsparkSession.sharedState().statusStore().executionsList()
    return max((executions.apply(i).executionId() for i in range(executions.size())), default=-1) + 1


def corpus_size(corpus: Path) -> tuple[int, int]:
    files = sorted(corpus.glob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files), sum(f.stat().st_size for f in files)


def context(corpus: Path, lake: Path, *overrides: str) -> Any:
    from jobs.core.config import load_config
    from jobs.core.context import Context

    cfg = load_config(None, [f"input.path={corpus}/*.parquet", f"lake.root={lake}",
                             "spark.extra.spark.sql.ui.retainedExecutions=100000", *overrides])
    return Context.create(cfg)


def measure_scans(work: Path, copies: int) -> None:
    from jobs.core.runner import run
    from jobs.stages import extract

    corpus = variant_corpus(work / "scans-in", copies)
    rows, size = corpus_size(corpus)
    print(f"scans: input {rows:,} files in {size / 2**20:.1f} MiB of parquet")
    print(f"{'chunks':>6} {'input rows read':>16} {'x one read':>10} {'input MiB':>10} {'x one read':>10} "
          f"{'scratch rows read':>18} {'s':>6}")
    for chunks in (1, 4, 16):
        ctx = context(corpus, work / f"scans-lake-{chunks}", f"run.chunk_rows={math.ceil(rows / chunks)}")
        first = next_execution(ctx.spark)
        started = time.perf_counter()
        summary = run(extract.STAGE, ctx)
        seconds = time.perf_counter() - started
        assert summary.chunks == chunks, (summary.chunks, chunks)
        scans = executions_since(ctx.spark, first)
        mine = [s for s in scans if str(corpus) in s.location]
        scratch = [s for s in scans if "/_staging/" in s.location]
        read_rows, read_bytes = sum(s.rows for s in mine), sum(s.bytes for s in mine)
        print(f"{chunks:>6} {read_rows:>16,} {read_rows / rows:>10.2f} {read_bytes / 2**20:>10.1f} "
              f"{read_bytes / size:>10.2f} {sum(s.rows for s in scratch):>18,} {seconds:>6.1f}")
        for scan in mine:
            print(f"{'':>8}input scan: {scan.rows:,} rows by '{scan.description[:60]}'")
    print("target: input rows and bytes over all chunks <= 1.3x one full read")


def timed(stage: Any, ctx: Any) -> tuple[float, int]:
    from jobs.core.runner import run

    started = time.perf_counter()
    summary = run(stage, ctx)
    return time.perf_counter() - started, summary.rows_in


def measure_growth(work: Path, copies: int) -> None:
    from jobs.stages import decontaminate, extract, typecheck

    stages = [("extract", extract.STAGE), ("decontaminate", decontaminate.STAGE),
              ("typecheck", typecheck.STAGE)]
    benchmarks = REPO.parent / "shared" / "benchmarks"
    results: dict[str, dict[int, tuple[float, int, float]]] = {name: {} for name, _ in stages}
    # Warm-up on 200 files, not reported: neither measured size pays the JVM's, Delta's
    # and the Python workers' first-use costs.
    warm = context(variant_corpus(work / "growth-warm", 1, files=200), work / "growth-lake-warm",
                   f"benchmarks.dir={benchmarks}")
    for _, stage in stages:
        timed(stage, warm)
    for n in (copies, 4 * copies):
        corpus = variant_corpus(work / f"growth-in-{n}", n)
        ctx = context(corpus, work / f"growth-lake-{n}", f"benchmarks.dir={benchmarks}")
        for name, stage in stages:
            seconds, rows_in = timed(stage, ctx)
            idle, _ = timed(stage, ctx)  # nothing pending: the stage's fixed cost
            results[name][n] = (seconds, rows_in, idle)
            print(f"growth: {name:<13} {n * 2000:>6,} files: {seconds:7.1f} s for {rows_in:,} rows; "
                  f"nothing pending: {idle:.1f} s")
    for name, by_n in results.items():
        (small, small_rows, idle), (large, large_rows, _) = by_n[copies], by_n[4 * copies]
        print(f"growth: {name:<13} time(4N)/time(N) = {large / small:.2f} (rows x{large_rows / max(small_rows, 1):.2f}); "
              f"fixed cost {idle:.1f} s = {idle / small:.0%} of time(N)")
    print("target: time(4N)/time(N) <= 4.5 for extract and typecheck, fixed cost < 20% of time(N)")


SEED_STAGES = ("extract", "decontaminate", "typecheck", "dedup")


@dataclass
class StageTime:
    rows: int
    seconds: float
    chunks: int
    idle: float = 0.0  # the same stage again with nothing pending: its fixed cost


def run_seed_stages(ctx: Any, stages: tuple[str, ...] = SEED_STAGES, idle: bool = True) -> dict[str, StageTime]:
    from jobs.core.registry import TABLE_STAGES
    from jobs.core.runner import run

    times: dict[str, StageTime] = {}
    for name in stages:
        started = time.perf_counter()
        summary = run(TABLE_STAGES[name], ctx)
        seconds = time.perf_counter() - started
        times[name] = StageTime(summary.rows_in, seconds, summary.chunks)
        if idle:
            started = time.perf_counter()
            run(TABLE_STAGES[name], ctx)
            times[name].idle = time.perf_counter() - started
    return times


def measure_stack(work: Path, files: int, chunk_rows: int, checkers: list[str]) -> None:
    from bench.projection import StageMeasure, print_projection
    from udfs.corpus import build_sample

    benchmarks = REPO.parent / "shared" / "benchmarks"
    common = [f"benchmarks.dir={benchmarks}", "run.chunk_rows=100000000"]
    corpora = {}
    for n in (200, files, 4 * files):
        out = work / f"stack-{n}" / "part-0.parquet"
        built = build_sample(out, files=n, seed=7, max_file_bytes=1_000_000)
        corpora[n] = (out.parent, built.files)
    # Warm-up, not reported: the JVM's, Delta's and the Python workers' first-use costs.
    run_seed_stages(context(corpora[200][0], work / "lake-warm", *common), idle=False)
    cores = cores_of(context(corpora[200][0], work / "lake-warm", *common).spark)
    print(f"stack: real installed Python files, {cores} cores (local), load average "
          f"{os.getloadavg()[0]:.1f} at start")

    measured: dict[int, dict[str, StageTime]] = {}
    for n in (files, 4 * files):
        corpus, real_files = corpora[n]
        lake = work / f"lake-{n}"
        ctx = context(corpus, lake, *common)
        measured[n] = run_seed_stages(ctx, SEED_STAGES[:2])
        # The other checkers on a copy of the same decontaminated functions (at N too: the
        # projection fits each stage's time through N and 4N).
        for checker in checkers[1:]:
            copy = work / f"lake-{n}-{checker}"
            shutil.copytree(lake, copy)
            other = context(corpus, copy, *common, f"typecheck.checker={checker}")
            measured[n][f"typecheck[{checker}]"] = run_seed_stages(other, ("typecheck",))["typecheck"]
        measured[n].update(run_seed_stages(ctx, SEED_STAGES[2:]))
        for name, t in measured[n].items():
            print(f"stack: {real_files:>7,} files {name:<22} {t.rows:>8,} rows {t.seconds:7.1f} s "
                  f"({t.chunks} chunk) nothing pending {t.idle:5.1f} s")
    large_files = corpora[4 * files][1]
    documented = documented_functions(context(corpora[4 * files][0], work / f"lake-{4 * files}", *common))
    chunked_ctx = context(corpora[4 * files][0], work / "lake-chunked", *common[:1],
                          f"run.chunk_rows={chunk_rows}")
    chunked = run_seed_stages(chunked_ctx, SEED_STAGES[:3], idle=False)

    rows: list[StageMeasure] = []
    names = [*SEED_STAGES[:3], *(f"typecheck[{c}]" for c in checkers[1:]), "dedup"]
    for name in names:
        small, large = measured[files].get(name), measured[4 * files][name]
        split = chunked.get(name)
        extra_chunks = (split.chunks - large.chunks) if split else 0
        chunk_cost = (split.seconds - large.seconds) / extra_chunks if split and extra_chunks else None
        growth = large.seconds / small.seconds if small else None
        rows.append(StageMeasure(name, large.rows, large.seconds, large.idle, cores, growth, chunk_cost,
                                 split.chunks if split else None, small.rows if small else None,
                                 small.seconds if small else None))
        extra = f", {split.chunks} chunks {split.seconds:.1f} s" if split else ""
        print(f"stack: {name:<22} 4N in 1 chunk {large.seconds:.1f} s{extra}")
    print_projection(rows, large_files, documented, checkers)


def documented_functions(ctx: Any) -> int:
    """Documented functions extract found: kept, exact duplicates and rule rejects (a
    function-level reject's item id is hexsha:function_id)."""
    from pyspark.sql import functions as F

    from schemas import FUNCTIONS, REJECTS

    rejected = (ctx.lake.read(REJECTS).where((F.col("stage") == "extract") & F.col("item_id").contains(":"))
                .count())
    return ctx.lake.read(FUNCTIONS).count() + rejected


def cores_of(spark: Any) -> int:
    master = spark.sparkContext.master or ""
    return int(master[6:-1]) if master.startswith("local[") and master[6:-1].isdigit() else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=2, help="scans: variants of the 2,000-file sample")
    parser.add_argument("--growth-copies", type=int, default=1, help="growth: N in copies of the sample")
    parser.add_argument("--skip-scans", action="store_true")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--stack", type=int, default=0, metavar="N",
                        help="stack: N real files (and 4N); skips scans and growth")
    parser.add_argument("--chunk-rows", type=int, default=7500, help="stack: rows per chunk of the chunked run")
    parser.add_argument("--checkers", default="pyright", help="stack: typecheck.checker values, pyright first")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="selfalign-scaling-"))
    if args.stack:
        measure_stack(work, args.stack, args.chunk_rows, args.checkers.split(","))
        return
    if not args.skip_scans:
        measure_scans(work, args.copies)
    if not args.skip_growth:
        measure_growth(work, args.growth_copies)


if __name__ == "__main__":
    main()
