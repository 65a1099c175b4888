"""Benchmark the sandbox against the physical baseline: unisolated fork+exec.

Measured in one run, on the same N small programs (a function and a passing assert),
each with the same thread pool of os.cpu_count() workers:

  baseline   subprocess.run([sys.executable, "-c", program]): a fresh interpreter,
             no isolation, no limits, no temp dir
  sandbox    udfs.sandbox.run_program at the strongest isolation level here

Both pay for the interpreter's start-up, which dominates a small program; the
sandbox adds namespaces (bwrap), a temp dir, the harness and its supervisor fork.
Target: sandbox/baseline >= 0.5. The two are interleaved and the best of --repeat
runs counts, so a burst of outside load on a shared box hits both. A short
sequential run of each also prints the per-program latency the sandbox adds; in the
pool part of that is waiting (namespace set-up and teardown), not CPU.

Run: .venv/bin/python bench/sandbox_bench.py [--n 200] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from udfs.sandbox import Limits, probe_isolation, run_program


def programs(n: int) -> list[str]:
    """n distinct small programs in the shape the respond stage produces."""
    return [
        f"def scale(values, factor):\n"
        f"    return [v * factor for v in values]\n\n"
        f"assert scale([1, 2, {i}], 3) == [3, 6, {3 * i}]\n"
        f"assert scale([], {i}) == []\n"
        for i in range(n)
    ]


def baseline(program: str) -> bool:
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, check=False)
    return done.returncode == 0


def time_pool(run, items: list[str], workers: int) -> tuple[float, Counter]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, items))
    return time.perf_counter() - start, Counter(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="programs per run")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs of each; the best counts")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--latency", type=int, default=20, help="programs run one at a time")
    args = parser.parse_args(argv)

    level = probe_isolation()
    limits = Limits()
    items = programs(args.n)
    print(f"isolation: {level}, cores: {os.cpu_count()}, workers: {args.workers}, "
          f"programs: {len(items)}, python {sys.version.split()[0]}")
    load_before = f"{os.getloadavg()[0]:.2f}"

    def sandboxed(program: str) -> str:
        return run_program(program, limits).status

    base_walls, box_walls = [], []
    for _ in range(args.repeat):
        wall, results = time_pool(baseline, items, args.workers)
        base_walls.append(wall)
        assert results[True] == len(items), f"baseline: {results}"
        wall, statuses = time_pool(sandboxed, items, args.workers)
        box_walls.append(wall)
        assert statuses["pass"] == len(items), f"sandbox: {statuses}"

    latency = items[: args.latency]
    base_one = time_pool(baseline, latency, 1)[0] / max(len(latency), 1)
    box_one = time_pool(sandboxed, latency, 1)[0] / max(len(latency), 1)

    base_rate, box_rate = len(items) / min(base_walls), len(items) / min(box_walls)
    print(f"load average before/after: {load_before} / {os.getloadavg()[0]:.2f}")
    print(f"baseline fork+exec   {base_rate:8.1f} programs/s  (best of {args.repeat}: {min(base_walls):.2f} s)")
    print(f"sandbox ({level:<7})   {box_rate:8.1f} programs/s  (best of {args.repeat}: {min(box_walls):.2f} s)")
    print(f"ratio sandbox/baseline: {box_rate / base_rate:.2f} (target >= 0.5)")
    print(f"one at a time ({len(latency)}): baseline {base_one * 1000:.0f} ms/program, "
          f"sandbox {box_one * 1000:.0f} ms/program")


if __name__ == "__main__":
    main()
