"""Compare Delta tables of two lakes by content."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql.types import TimestampType

# Columns that name the run or the clock: they differ between two runs by design.
VOLATILE = frozenset({"run_id", "duration_s"})


def snapshot(spark, lake: Path, table: str) -> list[tuple[str, ...]]:
    """The table's rows, sorted, without run ids, durations and timestamps."""
    frame = spark.read.format("delta").load(str(lake / table))
    keep = [f.name for f in frame.schema.fields
            if f.name not in VOLATILE and not isinstance(f.dataType, TimestampType)]
    return sorted(tuple(map(repr, row)) for row in frame.select(*keep).collect())
