"""Real documented functions from this machine's Python sources, for the benchmarks."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from udfs.extract import Function, extract_file


def documented_functions(limit: int, site_packages: bool = True) -> list[Function]:
    """The first `limit` distinct functions of the stdlib (then site-packages), in path order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    roots = [stdlib, Path(sysconfig.get_paths()["purelib"])] if site_packages else [stdlib]
    seen: set[str] = set()
    found: list[Function] = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if root == stdlib and "site-packages" in path.parts:
                continue
            try:
                functions = extract_file(path.read_text(encoding="utf-8"), 10_000_000)
            except (OSError, UnicodeDecodeError):
                continue
            if not isinstance(functions, list):
                continue
            for fn in functions:
                if fn.function_id not in seen:
                    seen.add(fn.function_id)
                    found.append(fn)
                    if len(found) == limit:
                        return found
    return found
