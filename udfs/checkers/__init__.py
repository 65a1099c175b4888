"""The type checkers `typecheck.checker` selects, by name (udfs/typecheck.py runs them)."""

from __future__ import annotations

from udfs.checkers.base import (
    RULE_CRASH,
    RULE_TIMEOUT,
    RULE_UNNAMED,
    Checker,
    CheckerUnavailable,
    CheckOptions,
    CheckRun,
    Diagnostic,
)
from udfs.checkers.pyright_cli import BasedPyright, Pyright
from udfs.checkers.ty_cli import Ty

CHECKERS: dict[str, Checker] = {checker.name: checker for checker in (Pyright(), BasedPyright(), Ty())}


def checker_named(name: str) -> Checker:
    try:
        return CHECKERS[name]
    except KeyError:
        raise ValueError(f"unknown type checker {name!r}: one of {', '.join(CHECKERS)}") from None


__all__ = [
    "CHECKERS", "RULE_CRASH", "RULE_TIMEOUT", "RULE_UNNAMED", "CheckOptions", "CheckRun", "Checker",
    "CheckerUnavailable", "Diagnostic", "checker_named",
]
