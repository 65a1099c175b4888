"""Shared fixtures: one local SparkSession with Delta for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Spark test modules of stages still in progress (none at the moment):
# written but not yet seen green, so CI does not run them by default. Run them with
# SELFALIGN_WIP_TESTS=1 while finishing those stages.
WIP_TEST_MODULES: list[str] = []
collect_ignore = [] if os.environ.get("SELFALIGN_WIP_TESTS") else WIP_TEST_MODULES


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The benchmark files read in place (tests/paths.py says where)."""
    from tests.paths import BENCHMARKS

    if not (BENCHMARKS / "SOURCES.md").is_file():
        pytest.skip(f"benchmark data not found at {BENCHMARKS} (set SELFALIGN_BENCHMARKS_DIR)")
    return BENCHMARKS


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from jobs.core.config import load_config
    from jobs.core.session import get_spark

    cfg = load_config(None, [f"spark.ivy_dir={REPO / '.ivy'}", "spark.master=local[2]"])
    session = get_spark(cfg.spark)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def lake_context(spark):
    """The one way tests build a Context: `lake_context(root, *overrides)`, a lake at root
    with config overrides, on the session's SparkSession (module fixtures use it too)."""
    from tests.lakes import new_context

    return new_context


@pytest.fixture
def make_ctx(lake_context, tmp_path: Path):
    """A Context on a fresh lake under tmp_path (or `lake=`), with config overrides."""

    def build(*overrides: str, lake: Path | None = None):
        return lake_context(lake or tmp_path / "lake", *overrides)

    return build
