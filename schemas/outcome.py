"""The outcome-row contract: the one contract between a stage's transform and the runner.

A transform returns *outcome rows*: the output table's columns (nullable, without
`run_id`) plus

- `source_key`    the input key the row came from (every pending input key must yield
                  at least one outcome row: kept or rejected, never silence),
- `item_id`       the id of the dropped item, for rejects,
- `reject_reason` null for kept rows, a machine-readable reason otherwise,
- `reject_detail` a human-readable detail for rejects,
- `retry_error`   set on rows that failed transiently: logged in `errors`, and their
                  input key stays pending so the next run retries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from pyspark.sql.types import StringType, StructField, StructType

from schemas.spec import TableSpec

SOURCE_KEY = "source_key"
ITEM_ID = "item_id"
REJECT_REASON = "reject_reason"
REJECT_DETAIL = "reject_detail"
RETRY_ERROR = "retry_error"
OUTCOME_COLUMNS = (SOURCE_KEY, ITEM_ID, REJECT_REASON, REJECT_DETAIL)


def outcome_schema(output: TableSpec) -> StructType:
    """Outcome rows of a stage writing `output`: its columns (nullable, no run_id) + outcome ones."""
    fields = [StructField(f.name, f.dataType, True) for f in output.schema.fields if f.name != "run_id"]
    extra = [StructField(name, StringType(), True) for name in (*OUTCOME_COLUMNS, RETRY_ERROR)]
    return StructType(fields + extra)


def outcome_frame(rows: Iterable[Mapping[str, Any]], schema: StructType) -> pd.DataFrame:
    """A pandas batch with exactly the schema's columns; absent keys become nulls (None)."""
    names = schema.fieldNames()
    return pd.DataFrame([{name: row.get(name) for name in names} for row in rows], columns=pd.Index(names))
