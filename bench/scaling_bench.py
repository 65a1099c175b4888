"""How much of the input each chunk reads: Spark's own scan metrics, summed over chunks.

For the extract stage's pending input (the sample corpus, or `--copies` deterministic
variants of it), at 1, 4 and 16 chunks, two ways of cutting chunks are run side by side:

  filter   chunk i = pending.where(pmod(xxhash64(key), n) == i): the plan the runner
           used before; the filter is not pushed into the parquet scan
  staged   the runner's way (jobs/core/runner.py, chunk_inputs): the pending rows are
           written once to a staging table partitioned by chunk, and chunk i reads its
           partition only

For every query it runs, the bench reads the executed plan's scan nodes (rows output and
bytes of files read, per scanned location) and sums what came from the input corpus.
Printed: input rows and bytes scanned over all chunks, as a multiple of one full read
(target <= 1.3x). The pending count the runner makes first reads the key column only,
and is shown apart.

    .venv/bin/python bench/scaling_bench.py [--copies 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "stack_sample" / "stack_sample.parquet"


def variant_corpus(out: Path, copies: int) -> Path:
    """The sample `copies` times, each copy's files with a distinct hexsha and a comment
    line, so they are distinct files with the same content shape."""
    table = pq.read_table(SAMPLE)
    out.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        hexsha = [f"{copy:04x}{h[4:]}" for h in table.column("hexsha").to_pylist()]
        content = [f"# copy {copy}\n{c}" for c in table.column("content").to_pylist()]
        variant = table.set_column(table.schema.get_field_index("hexsha"), "hexsha", pa.array(hexsha))
        variant = variant.set_column(variant.schema.get_field_index("content"), "content",
                                     pa.array(content))
        pq.write_table(variant, out / f"part-{copy:03d}.parquet", row_group_size=500)
    return out


def scans(df: Any) -> list[tuple[str, int, int]]:
    """Run df's physical plan once; (location, rows output, bytes of files read) per scan."""
    plan = df._jdf.queryExecution().executedPlan()
    plan.executeCollect()
    found = []
    leaves = plan.collectLeaves()
    for i in range(leaves.size()):
        leaf = leaves.apply(i)
        metrics = leaf.metrics()
        if not metrics.contains("numOutputRows") or not metrics.contains("filesSize"):
            continue
        location = str(leaf.relation().location().rootPaths().apply(0))
        found.append((location, int(metrics.apply("numOutputRows").value()),
                      int(metrics.apply("filesSize").value())))
    return found


def from_input(found: list[tuple[str, int, int]], corpus: Path | str) -> tuple[int, int]:
    """Rows and bytes the scans of `corpus` (a path, or part of one) read."""
    mine = [(rows, size) for location, rows, size in found if str(corpus) in location]
    return sum(r for r, _ in mine), sum(s for _, s in mine)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=2, help="variants of the 2,000-file sample")
    args = parser.parse_args(argv)

    from pyspark.sql import functions as F

    from jobs.core.config import load_config
    from jobs.core.context import Context
    from jobs.core.runner import CHUNK, chunk_inputs, pending_of
    from jobs.stages import extract

    work = Path(tempfile.mkdtemp(prefix="selfalign-scaling-"))
    corpus = variant_corpus(work / "in", args.copies)
    # AQE off: the executed plan is then the plan that ran, with its scan metrics.
    cfg = load_config(None, [f"input.path={corpus}/*.parquet", f"lake.root={work / 'lake'}",
                             "spark.extra.spark.sql.adaptive.enabled=false"])
    ctx = Context.create(cfg)
    pending = pending_of(extract.STAGE, ctx)
    full_rows, full_bytes = from_input(scans(pending.select(F.length("content"))), corpus)
    count_rows, count_bytes = from_input(scans(pending.groupBy().count()), corpus)
    print(f"input: {full_rows:,} files, {full_bytes / 2**20:.1f} MiB read by one full scan; "
          f"the pending count reads {count_rows:,} rows, {count_bytes / 2**20:.2f} MiB (key column)")
    print(f"{'chunks':>6} {'way':<7} {'rows read':>12} {'x full':>7} {'MiB read':>9} {'x full':>7} {'s':>6}")
    for chunks in (1, 4, 16):
        # filter: each chunk scans the input with a pmod filter on top.
        started = time.perf_counter()
        rows = size = 0
        for index in range(chunks):
            part = pending.where(F.pmod(F.xxhash64("hexsha"), F.lit(chunks)) == index)
            r, s = from_input(scans(part.select(F.length("content"))), corpus)
            rows, size = rows + r, size + s
        seconds = time.perf_counter() - started
        print(f"{chunks:>6} {'filter':<7} {rows:>12,} {rows / full_rows:>7.2f} {size / 2**20:>9.1f} "
              f"{size / full_bytes:>7.2f} {seconds:>6.1f}")
        # staged: one staging write (its scan of the input counted), then chunk partitions.
        started = time.perf_counter()
        staged_from_input = from_input(scans(
            pending.withColumn(CHUNK, F.pmod(F.xxhash64("hexsha"), F.lit(chunks)))), corpus)
        parts = chunk_inputs(extract.STAGE, ctx, pending, chunks)
        rows, size = staged_from_input if chunks > 1 else (0, 0)
        staged_rows = 0
        for part in parts:
            found = scans(part.select(F.length("content")))
            r, s = from_input(found, corpus)
            rows, size = rows + r, size + s
            staged_rows += from_input(found, "-pending")[0]
        seconds = time.perf_counter() - started
        print(f"{chunks:>6} {'staged':<7} {rows:>12,} {rows / full_rows:>7.2f} {size / 2**20:>9.1f} "
              f"{size / full_bytes:>7.2f} {seconds:>6.1f}   staged rows read by all chunks: "
              f"{staged_rows:,}")
    print("target: staged total <= 1.3x one full read at every chunk count")


if __name__ == "__main__":
    main()
