"""A real Delta table: create, insert-only MERGE, upsert, time travel, commit metadata."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql.types import LongType, StringType, StructField, StructType

from schemas.spec import TableSpec

pytestmark = pytest.mark.spark

SPEC = TableSpec(
    name="things",
    schema=StructType([StructField("id", StringType(), False), StructField("n", LongType(), True)]),
    key=("id",),
    description="test table",
)


def rows(spark, data):
    return spark.createDataFrame(data, SPEC.schema)


def test_insert_only_merge_is_idempotent_and_time_travels(make_ctx, spark):
    ctx = make_ctx()
    lake = ctx.lake
    lake.tag_commits("run-1")
    lake.insert_new(SPEC, rows(spark, [("a", 1), ("b", 2)]))
    lake.insert_new(SPEC, rows(spark, [("a", 100), ("c", 3)]))  # 'a' exists: not replaced
    lake.insert_new(SPEC, rows(spark, [("a", 1), ("b", 2)]))  # re-run: adds nothing

    expected = rows(spark, [("a", 1), ("b", 2), ("c", 3)])
    assert_df_equality(lake.read(SPEC), expected, ignore_row_order=True, ignore_nullable=True)

    path = lake.path(SPEC)
    first_version = (
        DeltaTable.forPath(spark, path).history().where("operation = 'MERGE'")
        .agg({"version": "min"}).first()[0]
    )
    as_of_first = spark.read.format("delta").option("versionAsOf", first_version).load(path)
    assert_df_equality(as_of_first, rows(spark, [("a", 1), ("b", 2)]),
                       ignore_row_order=True, ignore_nullable=True)

    metadata = {r["userMetadata"] for r in DeltaTable.forPath(spark, path).history().collect()
                if r["operation"] == "MERGE"}
    assert metadata == {"run-1"}


def test_tables_are_created_with_declared_partitioning(make_ctx, spark):
    from schemas import REJECTS

    lake = make_ctx().lake
    lake.ensure(REJECTS)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{lake.path(REJECTS)}`").first()
    assert list(detail["partitionColumns"]) == ["stage"]
    assert detail["description"] == REJECTS.description
