"""Shared fixtures: one local SparkSession with Delta for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from jobs.config import load_config
    from jobs.session import get_spark

    cfg = load_config(None, [f"spark.ivy_dir={REPO / '.ivy'}", "spark.master=local[2]"])
    session = get_spark(cfg.spark)
    yield session
    session.stop()


@pytest.fixture
def make_ctx(spark, tmp_path: Path):
    """Build a Context on a fresh lake under tmp_path, with optional config overrides."""
    from jobs.config import load_config
    from jobs.context import Context

    def build(*overrides: str, lake: Path | None = None):
        root = lake or tmp_path / "lake"
        cfg = load_config(None, [f"lake.root={root}", *overrides])
        return Context.create(cfg)

    return build
