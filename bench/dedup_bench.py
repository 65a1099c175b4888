"""Dedup stage scaling: the whole stage (signatures, LSH, components, Delta writes) on N
and 4N functions, each in a fresh lake. Prints seconds for each and time(4N)/time(N):
a global near-dedup that stays linear in its input prints about 4 (target <= ~4.5).

Input: distinct documented functions of the stdlib and site-packages (udfs.extract),
with a planted near-duplicate (renamed, commented, one added line) after every tenth
one so clusters exist, written straight into the lake's functions + typecheck tables.
When more functions are asked for than this machine has, deterministic variants follow:
variant k suffixes every identifier and word with `_k`, so its word shingles differ
from the original's (a distinct function, not a near-duplicate).

Also printed: functions per second per core at 4N (issue 13's target: >= 220 at
>= 100k functions, i.e. `--n 25000`).

    .venv/bin/python bench/dedup_bench.py [--n 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import keyword
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_functions import documented_functions

from udfs.extract import Function, function_id


def near_duplicate(fn: Function) -> str:
    """Renamed function, a comment after the signature, one extra line at the end."""
    code = re.sub(rf"\b{re.escape(fn.name)}\b", f"{fn.name}_copy", fn.code, count=1)
    lines = code.split("\n")
    return "\n".join([lines[0], "    # vendored copy, keep in sync", *lines[1:], "    # end of copy"])


WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def variant(fn: Function, k: int) -> Function:
    """The function with every identifier and word suffixed `_k` (keywords kept)."""
    def rename(match: re.Match[str]) -> str:
        word = match.group(0)
        return word if keyword.iskeyword(word) or word in ("self", "cls") else f"{word}_{k}"

    code = WORD.sub(rename, fn.code)
    return dataclasses.replace(fn, name=f"{fn.name}_{k}", code=code, function_id=function_id(code))


def functions_with_variants(size: int) -> list[Function]:
    real = documented_functions(size)
    found = list(real)
    k = 1
    while len(found) < size and real:
        found.extend(variant(fn, k) for fn in real[: size - len(found)])
        k += 1
    return found


def corpus(size: int) -> list[tuple[Function, str, int]]:
    """(source function, code, stars): real functions plus a planted copy after every tenth."""
    rows: list[tuple[Function, str, int]] = []
    for index, fn in enumerate(functions_with_variants(size)):
        stars = int(hashlib.sha256(fn.function_id.encode()).hexdigest()[:4], 16) % 500
        rows.append((fn, fn.code, stars))
        if index % 10 == 0:
            rows.append((fn, near_duplicate(fn), stars // 2))
        if len(rows) >= size:
            break
    return rows[:size]


def load_lake(ctx: Any, rows: list[tuple[Function, str, int]]) -> None:
    from schemas import FUNCTIONS, TYPECHECK

    functions, verdicts = [], []
    for fn, code, stars in rows:
        fid = function_id(code)
        functions.append((fid, fn.name, fn.signature, fn.docstring, code, fn.imports, fn.line_count,
                          fn.arg_count, fn.has_return, fid[:40], "bench/repo", "mod.py", ["MIT"],
                          stars, "bench"))
        verdicts.append((fid, True, None, None, None, "bench", "bench"))
    ctx.lake.insert_new(FUNCTIONS, ctx.spark.createDataFrame(functions, FUNCTIONS.schema))
    ctx.lake.insert_new(TYPECHECK, ctx.spark.createDataFrame(verdicts, TYPECHECK.schema))


def timed_stage(cfg: Any, rows: list[tuple[Function, str, int]]) -> tuple[float, Any, int]:
    from pyspark.sql import functions as F

    from jobs.core.context import Context
    from jobs.core.runner import run
    from jobs.stages import dedup
    from schemas import CLUSTERS

    ctx = Context.create(cfg)
    load_lake(ctx, rows)
    start = time.perf_counter()
    summary = run(dedup.STAGE, ctx)
    seconds = time.perf_counter() - start
    multi = ctx.lake.read(CLUSTERS).where(F.col("cluster_size") > 1).select("cluster_id").distinct().count()
    return seconds, summary, multi


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from jobs.core.config import load_config

    rows = corpus(4 * args.n)
    if len(rows) < 4 * args.n:
        sys.exit(f"only {len(rows)} functions found, need {4 * args.n}")
    sizes = (50, args.n, 4 * args.n)
    with tempfile.TemporaryDirectory() as tmp:
        configs = {size: load_config(None, [f"lake.root={Path(tmp) / f'lake{size}'}"]) for size in sizes}
        # The first (small) run warms the JVM, Delta and the Python workers, so neither
        # measured size pays one-off start-up costs.
        results = {size: timed_stage(configs[size], rows[:size]) for size in sizes}
        del results[sizes[0]]

    print(f"cores: {os.cpu_count()}")
    for size, (seconds, summary, multi) in results.items():
        print(f"dedup stage N={size:>6}: {seconds:7.2f}s  in={summary.rows_in} "
              f"representatives={summary.rows_out} near_duplicates={summary.rows_rejected} "
              f"clusters>1={multi}")
    ratio = results[4 * args.n][0] / results[args.n][0]
    print(f"ratio time(4N)/time(N): {ratio:.2f} (target <= ~4.5)")
    cores = len(os.sched_getaffinity(0))
    rate = 4 * args.n / results[4 * args.n][0] / cores
    print(f"N={4 * args.n}: {rate:.0f} functions/s per core on {cores} cores "
          f"(target >= 220 at >= 100,000 functions)")


if __name__ == "__main__":
    main()
