"""The seed half over The Stack on a cluster, projected from what bench/scaling_bench.py
measured here (`--stack`): the headline every speed change is judged by.

Assumptions (printed with the figures):
- The Stack v1 Python: 13M files (the deduplicated release); STACK_FUNCTIONS documented
  functions as published, or as many as this corpus yields per file.
- CORES cluster cores, each as fast as one core here. Each stage's time is a fixed part
  plus a part per row (an affine fit through its one-chunk runs at N and 4N): the rate
  per core is the marginal one, (rows(4N) - rows(N)) / (time(4N) - time(N)) / cores here,
  and the fixed part (time(N) less its rows at that rate: the JVM's first queries, the
  run's records, building an index) is paid once. The average rate at 4N (rows / (time -
  nothing-pending time) / cores), which charges that fixed part to every row, gives the
  upper bound printed beside it.
- CHUNK_ROWS rows per chunk (docs/scale.md's guidance); every chunk after the first
  costs what one cost here (chunked run minus one-chunk run, per extra chunk), dedup
  is one chunk.
- The rows each stage gets scale with the documented functions: extract reads files,
  the later stages read what extract kept, as here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STACK_FILES = 13_000_000
STACK_FUNCTIONS = 5_000_000
CORES = 100
CHUNK_ROWS = 250_000
TARGETS_MINUTES = {"pyright": 25.0, "fast": 12.0}


@dataclass(frozen=True)
class StageMeasure:
    name: str
    rows: int  # its input rows here, at 4N
    seconds: float  # at 4N, one chunk
    fixed: float  # the same stage with nothing pending
    cores: int
    growth: float | None  # time(4N) / time(N)
    chunk_cost: float | None  # seconds per extra chunk
    chunks: int | None  # in the chunked run
    small_rows: int | None = None  # its input rows at N, one chunk
    small_seconds: float | None = None

    @property
    def average_per_core(self) -> float:
        """Rows per second per core at 4N, every second but the nothing-pending check
        charged to the rows."""
        return self.rows / max(self.seconds - self.fixed, 1e-9) / self.cores

    @property
    def marginal_per_core(self) -> float | None:
        """Rows per second per core that 3N more rows cost (None without a run at N, or
        when the larger run was not slower)."""
        if self.small_rows is None or self.small_seconds is None:
            return None
        extra_rows, extra_seconds = self.rows - self.small_rows, self.seconds - self.small_seconds
        if extra_rows <= 0 or extra_seconds <= 0:
            return None
        return extra_rows / extra_seconds / self.cores

    def per_core(self, model: str = "affine") -> float:
        marginal = self.marginal_per_core
        return marginal if model == "affine" and marginal is not None else self.average_per_core

    def fixed_part(self, model: str = "affine") -> float:
        """Seconds a run costs whatever its size: the affine fit's intercept (never below
        the nothing-pending check), or that check alone for the average model."""
        marginal = self.marginal_per_core
        if model != "affine" or marginal is None or self.small_rows is None or self.small_seconds is None:
            return self.fixed
        return max(self.fixed, self.small_seconds - self.small_rows / (marginal * self.cores))


@dataclass(frozen=True)
class Projected:
    name: str
    rows: int
    chunks: int
    seconds: float


def project(stages: list[StageMeasure], documented_here: int, documented_there: int,
            model: str = "affine") -> list[Projected]:
    """Each stage's rows, chunks and seconds on The Stack with CORES cores."""
    out = []
    for stage in (s for s in stages if s.rows):
        if stage.name == "extract":
            rows = STACK_FILES
        else:
            rows = round(stage.rows * documented_there / max(documented_here, 1))
        chunks = 1 if stage.name == "dedup" else max(1, math.ceil(rows / CHUNK_ROWS))
        seconds = (rows / (stage.per_core(model) * CORES) + (chunks - 1) * max(stage.chunk_cost or 0.0, 0.0)
                   + stage.fixed_part(model))
        out.append(Projected(stage.name, rows, chunks, seconds))
    return out


def headline(projected: list[Projected], checker: str) -> float:
    """Minutes of the seed half with one checker: extract, decontaminate, that checker's
    typecheck, dedup."""
    wanted = {"extract", "decontaminate", "dedup",
              "typecheck" if checker == "pyright" else f"typecheck[{checker}]"}
    return sum(p.seconds for p in projected if p.name in wanted) / 60


def print_projection(stages: list[StageMeasure], files_here: int, documented_here: int,
                     checkers: list[str]) -> None:
    print(f"\n{'stage':<22} {'rows here':>10} {'per core/s':>10} {'(average)':>9} {'fixed s':>8} "
          f"{'idle s':>7} {'4N/N':>6} {'s/extra chunk':>13}")
    for s in stages:
        growth = f"{s.growth:.2f}" if s.growth else "-"
        cost = f"{s.chunk_cost:.1f}" if s.chunk_cost is not None else "-"
        print(f"{s.name:<22} {s.rows:>10,} {s.per_core():>10,.1f} {s.average_per_core:>9,.1f} "
              f"{s.fixed_part():>8.1f} {s.fixed:>7.1f} {growth:>6} {cost:>13}")
    print("per core/s: marginal rate N -> 4N (the projection's); (average): at 4N with only the "
          "nothing-pending (idle) time taken off; fixed s: the affine fit's intercept")
    print("targets: 4N/N <= 4.5 for every stage; <= 3 s per extra chunk")
    yield_here = documented_here / max(files_here, 1)
    scenarios = [(f"{STACK_FUNCTIONS / 1e6:.0f}M documented functions (as published)", STACK_FUNCTIONS),
                 (f"{yield_here:.2f} documented functions per file (this corpus)", round(STACK_FILES * yield_here))]
    for title, documented in scenarios:
        projected = project(stages, documented_here, documented)
        print(f"\nprojection: The Stack v1 Python, {STACK_FILES / 1e6:.0f}M files, {title}, "
              f"{CORES} cores, {CHUNK_ROWS:,} rows per chunk")
        print(f"{'stage':<22} {'rows':>12} {'chunks':>6} {'minutes':>8}")
        for p in projected:
            print(f"{p.name:<22} {p.rows:>12,} {p.chunks:>6} {p.seconds / 60:>8.1f}")
        upper = project(stages, documented_here, documented, model="average")
        for checker in checkers:
            target = TARGETS_MINUTES["pyright" if checker == "pyright" else "fast"]
            print(f"seed half with {checker}: {headline(projected, checker):.1f} minutes (target <= {target:g}); "
                  f"{headline(upper, checker):.1f} at the average rates")
    print("assumptions: each cluster core as fast as one here; per-row cost the marginal one from N "
          "to 4N, fixed cost paid once; every extra chunk costs what it cost here (bench/projection.py)")
