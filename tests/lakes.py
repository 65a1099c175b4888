"""Building a Context on a test lake: used through the `lake_context` fixture (conftest.py),
so every test lake is made the same way."""

from __future__ import annotations

from pathlib import Path

from jobs.core.config import load_config
from jobs.core.context import Context


def new_context(root: Path | str, *overrides: str) -> Context:
    """A Context whose lake is at `root`, with config overrides (key=value)."""
    return Context.create(load_config(None, [f"lake.root={root}", *overrides]))
