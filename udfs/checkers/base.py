"""What every type checker the typecheck stage can run has in common.

A `Checker` knows four things about its tool: where its executable is, how to
prove it runs (its version), what configuration file a batch directory needs,
and how to read its output into `Diagnostic`s of severity error. Running it
over a directory (a process group, a timeout that kills the group) is the same
for all of them and lives here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

# Stage-level reasons, named when pyright was the only checker; every checker uses them
# (schemas/outcome.py Reason), so rejects of existing lakes keep one vocabulary.
RULE_CRASH = "pyright_crash"
RULE_TIMEOUT = "pyright_timeout"
# pyright names no rule for parser errors (syntax newer than pythonVersion
# included) and a few semantic ones such as `yield` outside a function.
RULE_UNNAMED = "pyright_syntax"

# Dot-prefixed so the checkers' default excludes keep it out of the checked files.
EMPTY_VENV_DIR = ".empty-venv"
EMPTY_VENV_NAME = "venv"

_VERSION_TIMEOUT_S = 300.0  # a first run may bootstrap node or the npm package


class CheckerUnavailable(RuntimeError):
    """The selected checker (or what it runs on) is missing; the message says how to install it."""


@dataclass(frozen=True)
class CheckOptions:
    """What the typecheck section asks of every batch, whichever checker runs it."""

    python_version: str = "3.11"
    type_checking_mode: str = "basic"  # "basic" | "standard" (published: pyright's default)
    report_missing_imports: str = "none"  # "none" | "error" (published: error)
    checker: str = "pyright"  # "pyright" | "basedpyright" | "ty"


@dataclass(frozen=True)
class Diagnostic:
    """One error-severity diagnostic, in the same shape for every checker."""

    file: str  # the file's name only: a reported path may be resolved (/tmp -> /private/tmp)
    line: int  # 1-based
    column: int  # 1-based
    rule: str
    message: str  # the first line: the rest explains a type mismatch at length


@dataclass(frozen=True)
class CheckRun:
    """One checker process: its error diagnostics, or why it gave none."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    failure: str | None = None  # RULE_CRASH | RULE_TIMEOUT
    detail: str = ""
    files_analyzed: int | None = None  # None where the checker does not say


def first_line(text: object) -> str:
    return str(text).split("\n", 1)[0]


def tail(data: bytes, chars: int = 200) -> str:
    return data.decode("utf-8", "replace").strip()[-chars:]


def crash(returncode: int, stdout: bytes, stderr: bytes) -> CheckRun:
    # A runtime's own failures (node's heap limit, a Rust panic) land on stderr.
    why = tail(stderr) or tail(stdout) or "no output"
    return CheckRun(failure=RULE_CRASH, detail=f"exit code {returncode}: {why}")


def unreadable(stdout: bytes, what: str) -> CheckRun:
    head = stdout.decode("utf-8", "replace").strip()[:200]
    return CheckRun(failure=RULE_CRASH, detail=f"output is not {what}: {head!r}")


def empty_venv(directory: Path, python_version: str) -> Path:
    """An empty virtualenv in the batch dir: the checker sees no installed package."""
    venv = directory / EMPTY_VENV_DIR / EMPTY_VENV_NAME
    (venv / "lib" / f"python{python_version}" / "site-packages").mkdir(parents=True, exist_ok=True)
    return venv


class Checker(ABC):
    """One type checker: subclasses say how to configure, run and read it."""

    name: ClassVar[str]
    install_hint: ClassVar[str]
    version_pattern: ClassVar[re.Pattern[str]]  # group 1: the version, in `--version` output

    def executable(self) -> str | None:
        """The console script of this interpreter's environment, else the one on PATH.

        The one next to sys.executable is the pinned package even when the venv is
        not activated (spark executors run `.venv/bin/python` with a bare PATH).
        """
        beside = Path(sys.executable).parent / self.name
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
        return shutil.which(self.name)

    def require_executable(self) -> str:
        exe = self.executable()
        if exe is None:
            raise CheckerUnavailable(
                f"{self.name} not found beside {sys.executable} nor on PATH: {self.install_hint}")
        return exe

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def version(self) -> str:
        """The checker's version, after one real run; raises CheckerUnavailable otherwise.

        Called once when the stage starts, so a missing tool fails the job at once,
        not one task at a time.
        """
        exe = self.require_executable()
        try:
            done = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, env=self.env(),
                timeout=_VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckerUnavailable(f"{self.name} at {exe} did not run: {exc}; {self.install_hint}") from None
        found = self.version_pattern.search(done.stdout)
        if done.returncode != 0 or found is None:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise CheckerUnavailable(f"{self.name} at {exe} failed ({last[:200]}); {self.install_hint}")
        return found.group(1)

    @abstractmethod
    def write_config(self, directory: Path, options: CheckOptions) -> None:
        """Write the batch directory's configuration file (and its empty venv)."""

    @abstractmethod
    def command(self, exe: str, directory: Path) -> list[str]:
        """The command line that checks every file of `directory`."""

    @abstractmethod
    def parse(self, stdout: bytes, returncode: int, stderr: bytes = b"") -> CheckRun:
        """A CheckRun from one process's output; an exit code or output it cannot read is a crash."""

    def run(self, directory: Path, timeout_s: float) -> CheckRun:
        """One process over `directory`, whose configuration file applies."""
        exe = self.require_executable()
        proc = subprocess.Popen(
            self.command(exe, directory), cwd=directory, env=self.env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return CheckRun(failure=RULE_TIMEOUT, detail=f"no result after {timeout_s:g} s")
        return self.parse(stdout, proc.returncode, stderr)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The console scripts are python -> node: kill the whole group, not just python.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
