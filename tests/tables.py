"""Compare Delta tables of two lakes by content."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql.types import TimestampType

from jobs.core.lake import Lake

# Columns that name the run or the clock: they differ between two runs by design.
VOLATILE = frozenset({"run_id", "duration_s"})


def content(frame: DataFrame) -> list[tuple[str, ...]]:
    """A table's rows, sorted, without run ids, durations and timestamps."""
    keep = [f.name for f in frame.schema.fields
            if f.name not in VOLATILE and not isinstance(f.dataType, TimestampType)]
    return sorted(tuple(map(repr, row)) for row in frame.select(*keep).collect())


def snapshot(spark, lake: Path | str, table: str) -> list[tuple[str, ...]]:
    """`content` of a table of the lake at `lake` (which must have it)."""
    frame = Lake(spark, str(lake)).peek(table)
    assert frame is not None, f"no table {table!r} in {lake}"
    return content(frame)
