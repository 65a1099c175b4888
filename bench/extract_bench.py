"""Extract throughput per core: the Spark stage vs a bare `ast.parse` loop.

Both sides read the same parquet on the same cores: the baseline runs in as many
processes as Spark has cores (local[N]), each parsing its share of the files, finding
documented top-level functions and slicing their lines: the physical floor for this
work. Prints files/s of each and the ratios (stage / baseline; target >= 0.5x at
>= 10k files). The stage pauses Python's garbage collector while it parses and skips
the parser for files without a top-level `def`; the loop is also timed with the
collector paused, so what each of those buys is visible. Spark is warmed up by one
extract run over 20 files into a scratch lake (a nightly job is warm by its second
stage; the first query of a fresh JVM is scaling_bench's fixed cost).

    .venv/bin/python bench/extract_bench.py                 # committed corpus
    .venv/bin/python bench/extract_bench.py --files 5000    # larger corpus via `sample`
"""

from __future__ import annotations

import argparse
import ast
import gc
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def parse_share(job: tuple[list[str], int, int, bool]) -> tuple[int, int]:
    """Bare ast loop over every `workers`-th row group: parse, find top-level functions
    with a docstring, slice their lines (optionally with the garbage collector paused,
    as the stage parses)."""
    paths, index, workers, without_gc = job
    if without_gc:
        gc.disable()
    files = functions = 0
    groups = [(path, g) for path in paths for g in range(pq.ParquetFile(path).num_row_groups)]
    for path, group in groups[index::workers]:
        table = pq.ParquetFile(path).read_row_group(group, columns=["content"])
        for content in table.column("content").to_pylist():
            files += 1
            try:
                tree = ast.parse(content)
            except Exception:
                continue
            lines = content.splitlines()
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
                    "\n".join(lines[node.lineno - 1 : node.end_lineno])
                    functions += 1
    return files, functions


def baseline(paths: list[Path], workers: int, without_gc: bool = False) -> tuple[int, int, float]:
    """The bare loop in `workers` processes (started before the clock), as many as Spark's cores."""
    jobs = [([str(p) for p in paths], index, workers, without_gc) for index in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(abs, range(workers))  # started and warm
        start = time.perf_counter()
        counts = pool.map(parse_share, jobs)
        seconds = time.perf_counter() - start
    return sum(f for f, _ in counts), sum(n for _, n in counts), seconds


def stage(glob: str, first_file: Path, lake: Path) -> tuple[int, int, float, float, int]:
    """(files, functions, transform-only seconds, full stage seconds with Delta commits,
    Spark's cores)."""
    from pyspark.sql import functions as F

    from jobs.core.config import load_config
    from jobs.core.context import Context
    from jobs.core.lake import Lake
    from jobs.core.runner import run
    from jobs.stages import extract

    cfg = load_config(None, [f"input.path={glob}", f"lake.root={lake}"])
    ctx = Context.create(cfg)
    # Warm up as a nightly job is by its second stage: one extract run over a few files
    # into a scratch lake loads Delta's classes, compiles its first queries and starts the
    # Python workers. The baseline's processes are started before its clock too. (The
    # first query of a fresh JVM, about 15 s here, is scaling_bench's fixed cost.)
    warm_input = lake.parent / "warm-up" / "files.parquet"
    warm_input.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(first_file).slice(0, 20), warm_input)
    warm_cfg = load_config(None, [f"input.path={warm_input}", f"lake.root={lake.parent / 'warm-lake'}"])
    run(extract.STAGE, Context(ctx.spark, warm_cfg, Lake.from_config(ctx.spark, warm_cfg.lake), "warm-up"))
    empty = ctx.spark.createDataFrame([], "function_id string, hexsha string")

    start = time.perf_counter()
    settings = extract.ExtractSettings(cfg.extract, empty)
    # The transform alone: `resolve` runs at commit on the staged rows (parsing again here).
    outcomes = extract.transform(extract.read_files(ctx), settings)
    counts = outcomes.agg(
        F.count_distinct("source_key").alias("files"),
        F.count("function_id").alias("functions"),
    ).first()
    assert counts is not None
    transform_s = time.perf_counter() - start

    start = time.perf_counter()
    run(extract.STAGE, ctx)
    full_s = time.perf_counter() - start
    master = ctx.spark.sparkContext.master or ""  # local[N]: N cores; elsewhere this machine's
    cores = int(master[6:-1]) if master.startswith("local[") and master[6:-1].isdigit() else os.cpu_count()
    return counts["files"], counts["functions"], transform_s, full_s, cores or 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", default="data/stack_sample/*.parquet")
    parser.add_argument("--files", type=int, default=0,
                        help="build a larger corpus of this many files with `selfalign sample` first")
    parser.add_argument("--copies", type=int, default=0,
                        help="or: this many renamed copies of the committed sample (scaling_bench)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        glob = args.input
        if args.copies:
            from scaling_bench import variant_corpus

            glob = str(variant_corpus(Path(tmp) / "corpus", args.copies) / "*.parquet")
        elif args.files:
            from udfs.corpus import build_sample

            out = Path(tmp) / "corpus" / "sample.parquet"
            build_sample(out, files=args.files, seed=7, max_file_bytes=1_000_000)
            glob = str(out)
        paths = sorted(Path(glob).parent.glob(Path(glob).name)) if Path(glob).is_absolute() \
            else sorted(Path().glob(glob))
        s_files, s_funcs, t_s, full_s, cores = stage(glob, paths[0], Path(tmp) / "lake")
        b_files, b_funcs, b_s = baseline(paths, cores)
        _, _, nogc_s = baseline(paths, cores, without_gc=True)

    print(f"spark cores: {cores}, baseline processes: {cores}, input: {glob}, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"baseline ast loop : {b_files} files {b_funcs} functions in {b_s:.2f}s "
          f"= {b_files / b_s:.0f} files/s, {b_funcs / b_s:.0f} functions/s")
    print(f"baseline, no gc   : {b_files / nogc_s:.0f} files/s (the loop with the collector paused, "
          "as the stage parses)")
    print(f"spark transform   : {s_files} files {s_funcs} functions in {t_s:.2f}s "
          f"= {s_files / t_s:.0f} files/s, {s_funcs / t_s:.0f} functions/s")
    print(f"spark full stage  : {full_s:.2f}s incl. Delta commits = {s_files / full_s:.0f} files/s")
    print(f"ratio transform/baseline (files/s): {(s_files / t_s) / (b_files / b_s):.2f}x")
    print(f"ratio full stage/baseline (files/s): {(s_files / full_s) / (b_files / b_s):.2f}x")
    print(f"ratio full stage/baseline without gc (files/s): {(s_files / full_s) / (b_files / nogc_s):.2f}x")


if __name__ == "__main__":
    main()
