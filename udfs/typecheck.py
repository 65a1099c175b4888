"""Type-check functions with pyright, many per process, one verdict per function.

Plain Python on plain values: `check_batch` takes (function_id, source) pairs and
returns a `Verdict` per id; the Spark stage is a thin mapInPandas wrapper around
`check_stream`. Unit-tested with the real checkers, no Spark.

`typecheck.checker` picks the tool (udfs/checkers/): pyright (the default and the
published one), basedpyright (a pyright fork: same verdicts in basic mode) or ty
(a Rust checker, much faster, configured to pyright's basic-mode errors as closely
as its rules allow). What follows is said of pyright; the same batches, empty venv,
import policy, split-and-retry and timeouts apply to each.

Why one process per directory: pyright's start-up (node, then parsing and binding
typeshed's builtins and the stubs a function imports) costs 1.5-3 s, while one
more function in a directory costs 3 ms (a one-liner) to 50 ms (library code).
One process per file is 40-300x slower than one process over a directory of
hundreds-thousands of files (bench/typecheck_bench.py). Each function is its own
module in that directory, so no function's verdict depends on its neighbours.
Never `--threads`: on 2 cores it is about 2x slower than one process (DESIGN.md).

Policy on imports (the sandbox that type-checks has no numpy, torch, ...):

- pyright sees only its bundled typeshed (stdlib + third-party stubs) and an
  empty virtualenv, never the Python that happens to run it. A function's
  verdict is then the same on a laptop, an executor with pandas installed, or CI.
- `reportMissingImports` and `reportMissingModuleSource` are off: an import
  pyright cannot resolve (numpy, a relative `from .utils import x`) binds an
  Unknown name, which type-checks like `Any`. A function is not dropped only
  because a package is absent where pyright runs; packages with bundled stubs
  (yaml, requests, six, ...) are still checked against those stubs.
- Every other diagnostic of severity "error" drops the function (basic mode).

`typecheck.type_checking_mode: standard` and `typecheck.report_missing_imports: error`
are the published settings (high_quality_subset.py of starcoder2-self-align runs
pyright with no config: its defaults, standard mode, where an unresolvable import is
an error). With the empty venv that rejects every import without bundled stubs; the
published run resolved against whatever its machine had installed, which no config
here can reproduce.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from udfs.checkers import (
    RULE_CRASH,
    RULE_TIMEOUT,
    CheckOptions,
    CheckRun,
    Diagnostic,
    checker_named,
)

_SAFE_ID = re.compile(r"[A-Za-z0-9_]+")
# One function alone takes a few seconds; this floor is far above it even on a loaded box.
MIN_SPLIT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rule: str | None = None
    message: str | None = None
    # 1-based line in the checked source (imports, a blank line, then the code).
    line: int | None = None


PASSED = Verdict(passed=True)

# (directory holding the checker's config and the files, timeout in seconds) -> run.
Runner = Callable[[Path, float], CheckRun]


# --- batches ----------------------------------------------------------------------------

def file_name(function_id: str) -> str:
    """A file name for the id: its first 40 characters when safe, else a hash of it."""
    stem = function_id if _SAFE_ID.fullmatch(function_id) else hashlib.sha256(function_id.encode()).hexdigest()
    return f"f_{stem[:40]}.py"


def name_files(ids: Iterable[str]) -> dict[str, str]:
    """file name -> function id, unique even if two ids share their first 40 characters."""
    names: dict[str, str] = {}
    for function_id in ids:
        name = file_name(function_id)
        if name in names:
            name = f"f_{hashlib.sha256(function_id.encode()).hexdigest()}.py"
        names[name] = function_id
    return names


def first_error(diagnostics: list[Diagnostic]) -> Verdict:
    """The verdict for one file's error diagnostics: the first by position is the reason."""
    if not diagnostics:
        return PASSED
    diag = min(diagnostics, key=lambda d: (d.line, d.column))
    return Verdict(passed=False, rule=diag.rule, message=diag.message, line=diag.line)


def verdicts_from(run: CheckRun, names: dict[str, str]) -> dict[str, Verdict]:
    by_name: dict[str, list[Diagnostic]] = {name: [] for name in names}
    for diag in run.diagnostics:
        if diag.file in by_name:
            by_name[diag.file].append(diag)
    return {names[name]: first_error(diags) for name, diags in by_name.items()}


def _run_on(
    batch: list[tuple[str, str, str]], root: Path, options: CheckOptions,
    timeout_s: float, runner: Runner,
) -> CheckRun:
    """Write (file name, id, source) triples into a fresh dir under root and run the checker."""
    directory = Path(tempfile.mkdtemp(prefix="batch-", dir=root))
    try:
        checker_named(options.checker).write_config(directory, options)
        for name, _, source in batch:
            # "replace": a lone surrogate must cost its function a verdict, not the batch.
            (directory / name).write_text(source, encoding="utf-8", errors="replace")
        run = runner(directory, timeout_s)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # Fewer files analyzed than written means some got no verdict: not a pass.
    if run.failure is None and run.files_analyzed is not None and run.files_analyzed < len(batch):
        return CheckRun(failure=RULE_CRASH, detail=f"analyzed {run.files_analyzed} of {len(batch)} files")
    return run


def _check_split(
    batch: list[tuple[str, str, str]], root: Path, options: CheckOptions,
    timeout_s: float, runner: Runner,
) -> dict[str, Verdict]:
    """Verdicts for a batch; a crashed or timed-out batch is halved until the culprit is alone."""
    run = _run_on(batch, root, options, timeout_s, runner)
    if run.failure is None:
        return verdicts_from(run, {name: function_id for name, function_id, _ in batch})
    if len(batch) == 1:
        return {batch[0][1]: Verdict(passed=False, rule=run.failure, message=run.detail)}
    # After a timeout each half gets half the time (floored): with the full
    # timeout at every level, one hanging function would cost log2(n) timeouts.
    if run.failure == RULE_TIMEOUT:
        timeout_s = max(timeout_s / 2, min(timeout_s, MIN_SPLIT_TIMEOUT_S))
    middle = len(batch) // 2
    verdicts = _check_split(batch[:middle], root, options, timeout_s, runner)
    verdicts.update(_check_split(batch[middle:], root, options, timeout_s, runner))
    return verdicts


def check_batch(
    items: list[tuple[str, str]],
    timeout_s: float,
    options: CheckOptions | None = None,
    runner: Runner | None = None,
) -> dict[str, Verdict]:
    """A Verdict for every (function_id, source) pair, from one checker process if all goes well.

    `source` is the function's imports, a blank line, then its code (see
    `function_source`). `options` (default: pyright, basic, Python 3.11) name the
    checker and what its config file says. `timeout_s` bounds each process; a batch
    that crashes or times out is split in halves and retried (halves of a timed-out
    batch get half its timeout, at least MIN_SPLIT_TIMEOUT_S), so one bad
    function costs about 2*log2(len(items)) extra runs and gets a RULE_CRASH /
    RULE_TIMEOUT verdict alone. `runner` (default: the checker's own run) is the
    seam tests use to inject failures; an exception it raises (CheckerUnavailable,
    a failed fork) propagates, so Spark retries the task instead of rejecting a
    whole batch. A repeated id is checked once (its first source).
    """
    opts = options or CheckOptions()
    run = runner or checker_named(opts.checker).run
    first_source: dict[str, str] = {}
    for function_id, source in items:
        first_source.setdefault(function_id, source)
    if not first_source:
        return {}
    names = name_files(first_source)
    batch = [(name, function_id, first_source[function_id]) for name, function_id in names.items()]
    root = Path(tempfile.mkdtemp(prefix=f"selfalign-{opts.checker}-"))
    try:
        return _check_split(batch, root, opts, timeout_s, run)
    finally:
        shutil.rmtree(root, ignore_errors=True)


T = TypeVar("T")


def even_batches(items: Iterable[T], batch_size: int) -> Iterator[list[T]]:
    """`items` in batches of `batch_size`, except that the last items never make a small
    batch of their own: what is left, between 1 and 2 batches' worth, comes as one or
    two equal batches (at most 1.5 x batch_size). At most 2 x batch_size items are held."""
    pending: list[T] = []
    for item in items:
        pending.append(item)
        if len(pending) >= 2 * batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]
    if not pending:
        return
    size = math.ceil(len(pending) / max(1, round(len(pending) / batch_size)))
    for start in range(0, len(pending), size):
        yield pending[start:start + size]


def check_stream(
    items: Iterable[tuple[str, str]],
    batch_size: int,
    timeout_s: float,
    options: CheckOptions | None = None,
) -> Iterator[tuple[str, Verdict]]:
    """Verdicts for a stream of pairs, about `batch_size` per checker process.

    For the mapInPandas wrapper: Arrow batches are smaller than a good checker
    batch, so pairs are gathered across them before each run. A task's last pairs
    never make a small batch of their own (`even_batches`): each process pays 2-3 s
    of CPU for the stubs its functions import, so a tail of 140 functions would cost
    about as much as 1,000, once per task and chunk.
    """
    for batch in even_batches(items, batch_size):
        yield from check_batch(batch, timeout_s, options).items()


def function_source(imports: str, code: str) -> str:
    """What gets type-checked for an extracted function: its imports, a blank line, its code.

    Always the same shape, so the code's first line is line imports.count("\\n") + 3.
    """
    return f"{imports}\n\n{code}\n"
