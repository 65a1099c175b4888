"""Benchmark the typecheck stage against the physical baseline: one raw pyright process.

Measured in one run, on the same N functions (extracted from this interpreter's
stdlib and site-packages, after extract's heuristic rules):

  raw           one `pyright --outputjson --project <dir>` over a dir already
                holding all N files (same pyrightconfig): the floor
  stage         udfs.typecheck.check_batch over the N, batch_size per process
  per-function  one pyright process per function on a small subset,
                extrapolated to a per-function rate

The stage cannot beat raw, so raw/per-function is the ceiling of stage/per-function:
it is high for short functions (3 ms each in a batch against 1.5-2 s of start-up)
and lower for long library code (30-50 ms each), which is what this corpus holds.

With --checkers pyright,basedpyright,ty it compares the checkers instead, on the
first N functions of bench/local_functions.py that pass extract's heuristic rules
(stdlib ones; --sample seeded: the seeded walk above, site-packages included),
each checked as the stage checks them (function_source, one file each, the checker's
own config, batch_size per process): wall and CPU seconds per checker, and each
checker's verdict agreement with pyright's (the first in the list), with the rules
behind the disagreements.

Run: .venv/bin/python bench/typecheck_bench.py [--n 1000] [--checkers pyright,basedpyright,ty]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import site
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.core.sections import ExtractConfig, TypecheckConfig
from udfs.checkers import CHECKERS, CheckOptions
from udfs.extract import RuleSet, check_rules, extract_file
from udfs.typecheck import Verdict, check_batch, file_name, function_source

PYRIGHT = CHECKERS["pyright"]


def source_files() -> Iterator[Path]:
    """Every .py file under the stdlib and site-packages, in a stable order."""
    roots = [sysconfig.get_paths()["stdlib"], *site.getsitepackages()]
    seen: set[Path] = set()
    for root in roots:
        for path in sorted(Path(root).rglob("*.py")):
            if path not in seen and path.is_file():
                seen.add(path)
                yield path


def sample_functions(n: int, seed: int) -> list[tuple[str, str]]:
    """n distinct (function_id, source) pairs that pass extract's heuristic rules.

    Files are visited in a seeded random order and the walk stops at 2n
    candidates: parsing all of site-packages (pyspark, pandas, ...) takes minutes.
    """
    cfg = ExtractConfig()
    rules = heuristic_rules()
    marker_re = rules.marker_pattern
    paths = list(source_files())
    rng = random.Random(seed)
    rng.shuffle(paths)
    found: dict[str, str] = {}
    for path in paths:
        if len(found) >= 2 * n:
            break
        try:
            content = path.read_bytes()
        except OSError:
            continue
        functions = extract_file(content, cfg.max_file_bytes)
        if isinstance(functions, list):
            for fn in functions:
                if check_rules(fn, rules, marker_re) is None:
                    found.setdefault(fn.function_id, function_source(fn.imports, fn.code))
    ids = sorted(found)
    rng.shuffle(ids)
    return [(fid, found[fid]) for fid in ids[:n]]


def heuristic_rules() -> RuleSet:
    cfg = ExtractConfig()
    return RuleSet(tuple(cfg.rules), cfg.max_lines, tuple(cfg.markers), frozenset(cfg.banned_imports))


@dataclass
class Cost:
    """Wall seconds and CPU seconds (this process plus its reaped children)."""

    wall: float = 0.0
    cpu: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall + other.wall, self.cpu + other.cpu)


def cpu_now() -> float:
    # CPU time, unlike wall time, barely moves when other jobs share the 2 cores.
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@contextmanager
def measure(cost: Cost) -> Iterator[None]:
    wall, cpu = time.perf_counter(), cpu_now()
    yield
    cost.wall += time.perf_counter() - wall
    cost.cpu += cpu_now() - cpu


def best(costs: list[Cost]) -> Cost:
    # The fastest run is the one least disturbed by other jobs on the box.
    return Cost(min(c.wall for c in costs), min(c.cpu for c in costs))


def write_dir(items: list[tuple[str, str]], python_version: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="typecheck-bench-"))
    PYRIGHT.write_config(directory, CheckOptions(python_version))
    for function_id, source in items:
        (directory / file_name(function_id)).write_text(source, encoding="utf-8")
    return directory


def time_raw(items: list[tuple[str, str]], cfg: TypecheckConfig) -> Cost:
    """One pyright process over a pre-written dir (writing it is not counted)."""
    directory = write_dir(items, cfg.python_version)
    cost = Cost()
    try:
        with measure(cost):
            run = PYRIGHT.run(directory, cfg.timeout_seconds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if run.failure is not None:
        raise SystemExit(f"raw pyright failed: {run.failure} {run.detail}")
    return cost


def time_stage(items: list[tuple[str, str]], cfg: TypecheckConfig,
               checker: str = "pyright") -> tuple[Cost, dict[str, Verdict]]:
    verdicts: dict[str, Verdict] = {}
    cost = Cost()
    options = CheckOptions(cfg.python_version, cfg.type_checking_mode, cfg.report_missing_imports, checker)
    with measure(cost):
        for lo in range(0, len(items), cfg.batch_size):
            batch = items[lo : lo + cfg.batch_size]
            verdicts.update(check_batch(batch, cfg.timeout_seconds, options))
    return cost, verdicts


def time_per_function(items: list[tuple[str, str]], cfg: TypecheckConfig) -> Cost:
    """Mean cost of one pyright process on one pre-written file."""
    total = Cost()
    for item in items:
        total = total + time_raw([item], cfg)
    return Cost(total.wall / len(items), total.cpu / len(items))


def report_verdicts(verdicts: dict[str, Verdict], top: int = 8) -> None:
    passed = sum(v.passed for v in verdicts.values())
    print(f"pass rate: {passed}/{len(verdicts)} = {passed / len(verdicts):.1%}")
    rules = Counter(v.rule for v in verdicts.values() if not v.passed)
    for rule, count in rules.most_common(top):
        print(f"  {rule:<36} {count:>6}  {count / len(verdicts):6.1%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="functions to check")
    parser.add_argument("--per-function", type=int, default=20, help="subset run one process each")
    parser.add_argument("--batch-size", type=int, default=TypecheckConfig().batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of raw and stage; the best counts")
    parser.add_argument("--checkers", default="", help="compare these checkers (the first is the reference)")
    parser.add_argument("--sample", choices=("documented", "seeded"), default="documented",
                        help="with --checkers: local_functions.py's first (stdlib) functions, or "
                             "the seeded walk over stdlib and site-packages the other mode uses")
    args = parser.parse_args(argv)
    class Measured(TypecheckConfig):  # batch_size is a constant of the config, measured here
        batch_size: ClassVar[int] = args.batch_size

    cfg = Measured()

    if args.checkers:
        items = documented_sample(args.n) if args.sample == "documented" else sample_functions(args.n, args.seed)
        compare_checkers(args.checkers.split(","), items, args.repeat, cfg, args.sample)
        return
    print(f"pyright {PYRIGHT.version()}, cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    # Wall times on a shared box move with others' load; CPU seconds much less.
    load_before = f"{os.getloadavg()[0]:.2f}"
    items = sample_functions(args.n, args.seed)
    print(f"functions: {len(items)}, batch_size: {cfg.batch_size}")

    # Per-function first: it also warms the OS file cache (node, typeshed) for the others.
    per_fn = time_per_function(items[: args.per_function], cfg)
    raws: list[Cost] = []
    stages: list[Cost] = []
    for _ in range(args.repeat):  # interleaved, so a burst of outside load hits both
        raws.append(time_raw(items, cfg))
        stage_cost, verdicts = time_stage(items, cfg)
        stages.append(stage_cost)
    raw, stage = best(raws), best(stages)

    n = len(items)
    print(f"load average before/after: {load_before} / {os.getloadavg()[0]:.2f}")
    print(f"{'':22}{'wall s':>9}{'fn/s':>9}{'cpu s':>9}{'fn/cpu-s':>10}")
    for label, cost, count in (
        ("raw pyright <dir>", raw, n),
        ("stage check_batch", stage, n),
        (f"one process each ({min(args.per_function, n)})", per_fn, 1),
    ):
        print(f"{label:<22}{cost.wall:9.2f}{count / cost.wall:9.2f}{cost.cpu:9.2f}{count / cost.cpu:10.2f}")
    for unit, pick in (("wall", lambda c: c.wall), ("cpu", lambda c: c.cpu)):
        stage_rate, raw_rate, one_rate = n / pick(stage), n / pick(raw), 1 / pick(per_fn)
        print(f"{unit:>4}: stage/raw {stage_rate / raw_rate:5.2f} (target >= 0.8)   "
              f"stage/per-function {stage_rate / one_rate:6.1f}x (target >= 100x)   "
              f"ceiling raw/per-function {raw_rate / one_rate:6.1f}x")
    report_verdicts(verdicts)


def documented_sample(n: int) -> list[tuple[str, str]]:
    """The first n functions of bench/local_functions.py that pass extract's heuristic rules."""
    from local_functions import documented_functions

    rules = heuristic_rules()
    marker_re = rules.marker_pattern
    kept: list[tuple[str, str]] = []
    for fn in documented_functions(4 * n):  # about a third pass the rules
        if check_rules(fn, rules, marker_re) is None:
            kept.append((fn.function_id, function_source(fn.imports, fn.code)))
            if len(kept) == n:
                break
    return kept


def disagreements(reference: dict[str, Verdict], other: dict[str, Verdict]) -> tuple[int, int, Counter[str]]:
    """(reference passes but other fails, the other way round, the rules behind both):
    the failing side's rule names each disagreement."""
    pass_fail = fail_pass = 0
    rules: Counter[str] = Counter()
    for fid, ref in reference.items():
        got = other[fid]
        if ref.passed and not got.passed:
            pass_fail += 1
            rules[f"{got.rule} (fails only here)"] += 1
        elif got.passed and not ref.passed:
            fail_pass += 1
            rules[f"{ref.rule} (fails only in the reference)"] += 1
    return pass_fail, fail_pass, rules


def compare_checkers(names: list[str], items: list[tuple[str, str]], repeat: int, cfg: TypecheckConfig,
                     sample: str) -> None:
    versions = {name: CHECKERS[name].version() for name in names}  # also warms the file cache
    print(", ".join(f"{name} {version}" for name, version in versions.items()),
          f"| cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    load_before = f"{os.getloadavg()[0]:.2f}"
    print(f"functions: {len(items)} ({sample} sample, after extract's rules), "
          f"batch_size: {cfg.batch_size}, mode: {cfg.type_checking_mode}, "
          f"missing imports: {cfg.report_missing_imports}")
    costs: dict[str, list[Cost]] = {name: [] for name in names}
    verdicts: dict[str, dict[str, Verdict]] = {}
    for _ in range(repeat):  # interleaved, so a burst of outside load hits every checker
        for name in names:
            cost, verdicts[name] = time_stage(items, cfg, name)
            costs[name].append(cost)
    print(f"load average before/after: {load_before} / {os.getloadavg()[0]:.2f}")
    reference = names[0]
    ref_cost = best(costs[reference])
    # x wall, x cpu: how many times faster than the reference.
    print(f"{'':14}{'wall s':>8}{'cpu s':>8}{'fn/cpu-s':>10}{'x wall':>8}{'x cpu':>7}{'pass':>7}{'agree':>8}"
          f"{'pass->fail':>12}{'fail->pass':>12}")
    for name in names:
        cost, got = best(costs[name]), verdicts[name]
        pass_fail, fail_pass, _ = disagreements(verdicts[reference], got)
        agree = 1 - (pass_fail + fail_pass) / len(items)
        passed = sum(v.passed for v in got.values()) / len(items)
        print(f"{name:<14}{cost.wall:8.2f}{cost.cpu:8.2f}{len(items) / cost.cpu:10.1f}"
              f"{ref_cost.wall / cost.wall:8.1f}{ref_cost.cpu / cost.cpu:7.1f}{passed:7.1%}{agree:8.1%}"
              f"{pass_fail:12}{fail_pass:12}")
    for name in names[1:]:
        _, _, rules = disagreements(verdicts[reference], verdicts[name])
        if rules:
            print(f"{name} against {reference}, top rules behind disagreements:")
            for rule, count in rules.most_common(5):
                print(f"  {count:5}  {rule}")


if __name__ == "__main__":
    main()
