"""ty (Astral's type checker, a Rust binary): configured by a ty.toml, read as SARIF.

ty has no "basic mode"; its rule levels are set here to agree with pyright's basic
(or standard) mode where a rule has a counterpart, so that only what pyright would
call an error drops a function (bench/typecheck_bench.py --checkers measures the
agreement). ty bundles only the stdlib's stubs; pyright also bundles typeshed's
third-party ones (yaml, requests, networkx, protobuf, ...), so ty's venv holds those,
linked from the pyright package (a dependency of selfalign): without them every such
import would be unresolved for ty and resolved for pyright. What stays different is
inference itself (pyright reads `# type:` function comments, infers a parameter's
type from its default, ...).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from udfs.checkers.base import (
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

CONFIG_NAME = "ty.toml"
# With -v, ty logs (on stderr) how many files it found to check: the files-analyzed count.
# Without that line the count is unknown and that check is skipped.
_INDEXED = re.compile(rb"Indexed (\d+) file\(s\)")

# Rules at "error" in pyright's basic mode whose ty counterparts ty only warns about,
# each seen on real functions: an unawaited coroutine (reportUnusedCoroutine), `global x`
# with no module-level x (reportUnboundVariable at its use), `importlib.util` after a bare
# `import importlib` (reportAttributeAccessIssue).
_ERRORS_IN_BASIC: tuple[str, ...] = ("unused-awaitable", "unresolved-global", "possibly-missing-submodule")
# Rules pyright's standard mode turns on (off in basic), by their ty counterparts:
# reportIncompatibleMethodOverride, reportIncompatibleVariableOverride and
# reportPossiblyUnbound. (reportFunctionMemberAccess has none: ty reports a function's
# missing attribute as missing-attribute in both modes.)
_STANDARD_ONLY = (
    "incompatible-method-override",
    "incompatible-attribute-override",
    "incompatible-property-override",
    "incompatible-mutable-override",
    "possibly-unresolved-reference",
)


def rule_levels(options: CheckOptions) -> dict[str, str]:
    standard = options.type_checking_mode == "standard"
    levels: dict[str, str] = dict.fromkeys(_ERRORS_IN_BASIC, "error")
    levels.update({rule: "error" if standard else "ignore" for rule in _STANDARD_ONLY})
    # pyright's reportMissingImports: "none" binds an Unknown name, as ty's "ignore" does.
    levels["import-not-found"] = "error" if options.report_missing_imports == "error" else "ignore"
    return levels


def ty_config(options: CheckOptions, venv: str) -> str:
    lines = [
        "[environment]",
        # The stubs-only venv: ty would otherwise use the environment it is installed in.
        f"python = {json.dumps(venv)}",
        f"python-version = {json.dumps(options.python_version)}",
        'python-platform = "linux"',
        "",
        "[src]",
        # A .gitignore above a temp dir must not hide the batch's files.
        "respect-ignore-files = false",
        "",
        "[rules]",
        *(f"{rule} = {json.dumps(level)}" for rule, level in sorted(rule_levels(options).items())),
    ]
    return "\n".join(lines) + "\n"


def typeshed_stubs() -> Path | None:
    """typeshed's third-party stubs, as the installed pyright package bundles them."""
    spec = importlib.util.find_spec("pyright")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    stubs = package / "dist" / "dist" / "typeshed-fallback" / "stubs"
    return stubs if stubs.is_dir() else None


def link_stubs(stubs: Path, site_packages: Path) -> None:
    """Every stub distribution's top-level modules, linked into site-packages.

    site-packages, not ty's extra-paths: those come before the stdlib, where setuptools'
    `distutils` stubs would hide the stdlib's (pyright resolves the stdlib first)."""
    for distribution in sorted(stubs.iterdir()):
        for entry in sorted(distribution.iterdir()):
            if entry.name != "METADATA.toml" and not entry.name.startswith("@"):  # @tests
                _link(entry, site_packages / entry.name)


def _link(source: Path, target: Path) -> None:
    """Link source at target; a package two distributions share (google: protobuf and
    google-cloud-ndb) becomes a directory of links to both's parts."""
    if not target.is_symlink() and not target.exists():
        target.symlink_to(source)
        return
    if not (source.is_dir() and target.is_dir()):
        return  # the first distribution's module wins, as two installed ones would clash
    if target.is_symlink():
        first = target.resolve()
        target.unlink()
        target.mkdir()
        for child in first.iterdir():
            (target / child.name).symlink_to(child)
    for child in source.iterdir():
        _link(child, target / child.name)


def require_stubs() -> Path:
    stubs = typeshed_stubs()
    if stubs is None:
        raise CheckerUnavailable("typeshed's third-party stubs not found (ty reads those the pyright "
                                 "package bundles): pip install 'pyright==1.1.411'")
    return stubs


def diagnostic(result: dict[str, Any]) -> Diagnostic | None:
    """A SARIF result of level error as a Diagnostic; None when it points at no file."""
    locations = result.get("locations") or []
    if not locations:
        return None
    where = locations[0]["physicalLocation"]
    region = where.get("region", {})
    return Diagnostic(
        file=PurePosixPath(unquote(urlparse(where["artifactLocation"]["uri"]).path)).name,
        line=int(region.get("startLine", 1)),
        column=int(region.get("startColumn", 1)),
        rule=str(result.get("ruleId") or "ty"),
        message=first_line(result.get("message", {}).get("text", "")),
    )


class Ty(Checker):
    name = "ty"
    install_hint = "pip install 'selfalign[fast-typecheck]' (ty==1.2.0)"
    version_pattern = re.compile(r"^ty (\d+\.\d+\.\d+)", re.MULTILINE)

    def env(self) -> dict[str, str]:
        # One thread, like one pyright process: Spark runs a task per core already.
        return {**os.environ, "TY_MAX_PARALLELISM": "1"}

    def version(self) -> str:
        self.require_executable()
        require_stubs()
        return super().version()

    def write_config(self, directory: Path, options: CheckOptions) -> None:
        venv = empty_venv(directory, options.python_version)
        link_stubs(require_stubs(), venv / "lib" / f"python{options.python_version}" / "site-packages")
        (directory / CONFIG_NAME).write_text(ty_config(options, str(venv.relative_to(directory))))

    def command(self, exe: str, directory: Path) -> list[str]:
        # --config-file: a user-level ~/.config/ty/ty.toml is then not merged in.
        return [exe, "check", "-v", "--no-progress", "--color", "never", "--output-format", "sarif",
                "--config-file", str(directory / CONFIG_NAME), "--project", str(directory)]

    def parse(self, stdout: bytes, returncode: int, stderr: bytes = b"") -> CheckRun:
        if returncode not in (0, 1):  # 1: errors found; 2: bad config or I/O; 101: a panic
            # Without -v's log lines, the tail is the failure (e.g. a stack overflow's abort).
            said = b"\n".join(line for line in stderr.splitlines() if not line.startswith(b"INFO "))
            return crash(returncode, stdout, said)
        try:
            results = json.loads(stdout)["runs"][0]["results"]
            found = [diagnostic(r) for r in results if r.get("level") == "error"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return unreadable(stdout, "ty SARIF")
        indexed = _INDEXED.search(stderr)
        return CheckRun(diagnostics=[d for d in found if d is not None],
                        files_analyzed=int(indexed.group(1)) if indexed else None)
