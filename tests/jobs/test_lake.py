"""A real Delta table: create, insert-only MERGE, upsert, time travel, commit metadata."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import LongType, StringType, StructField, StructType

from jobs.core.config import ConfigError
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
        lake.history(SPEC).where("operation = 'MERGE'").agg({"version": "min"}).first()[0]
    )
    as_of_first = spark.read.format("delta").option("versionAsOf", first_version).load(path)
    assert_df_equality(as_of_first, rows(spark, [("a", 1), ("b", 2)]),
                       ignore_row_order=True, ignore_nullable=True)

    metadata = {r["userMetadata"] for r in lake.history(SPEC).collect() if r["operation"] == "MERGE"}
    assert metadata == {"run-1"}


def test_tables_are_created_with_declared_partitioning(make_ctx, spark):
    from schemas import REJECTS

    lake = make_ctx().lake
    lake.ensure(REJECTS)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{lake.path(REJECTS)}`").first()
    assert list(detail["partitionColumns"]) == ["stage"]
    assert detail["description"] == REJECTS.description


def test_update_changed_updates_only_differing_values_and_never_inserts(make_ctx, spark):
    lake = make_ctx().lake
    lake.insert_new(SPEC, rows(spark, [("a", 1), ("b", 2), ("c", None)]))
    lake.update_changed(SPEC, rows(spark, [("a", 10), ("b", 2), ("c", 3), ("new", 9)]), ["n"])
    assert_df_equality(lake.read(SPEC), rows(spark, [("a", 10), ("b", 2), ("c", 3)]),
                       ignore_row_order=True, ignore_nullable=True)
    merges = lake.history(SPEC).where("operation = 'MERGE'").orderBy("version").collect()
    assert merges[-1]["operationMetrics"]["numTargetRowsUpdated"] == "2"  # 'b' was equal


def test_every_table_is_created_with_its_declared_schema_and_found_by_its_identifier(make_ctx):
    from schemas import TABLES

    lake = make_ctx().lake
    assert not lake.exists("functions") and lake.peek("functions") is None  # peek never creates
    lake.ensure_all()
    for spec in TABLES.values():
        assert lake.read(spec).schema == spec.schema, spec.name  # nullability included
    assert lake.name("functions") == f"delta.`{lake.root}/functions`"
    assert lake.exists("functions")


def test_odd_characters_in_the_root_are_quoted(make_ctx, tmp_path, spark):
    lake = make_ctx(lake=tmp_path / "it's a `lake`").lake
    lake.insert_new(SPEC, rows(spark, [("a", 1)]))
    lake.append(SPEC, rows(spark, [("b", 2)]))
    assert sorted(r["id"] for r in lake.read(SPEC).collect()) == ["a", "b"]
    assert (tmp_path / "it's a `lake`" / "things" / "_delta_log").is_dir()


def test_a_schema_in_an_in_memory_catalog_is_refused(make_ctx):
    from jobs.core.config import ConfigError

    lake = make_ctx("lake.schema=selfalign_test").lake  # the test session has no metastore
    assert lake.name(SPEC) == "`selfalign_test`.`things`"
    with pytest.raises(ConfigError, match="needs a persistent catalog"):
        lake.ensure(SPEC)


def test_a_table_from_an_earlier_release_gains_the_new_nullable_columns(make_ctx, spark):
    """Upgrading keeps the lake: a column this release added (nullable) is added to the
    existing table, old rows read it as null, new rows carry it."""
    from jobs.core import lake as lake_module

    ctx = make_ctx()
    ctx.lake.insert_new(SPEC, rows(spark, [("a", 1)]))
    newer = TableSpec(name=SPEC.name, key=SPEC.key, description=SPEC.description, schema=StructType(
        [*SPEC.schema.fields, StructField("note", StringType(), True)]))
    lake_module._ENSURED.discard(ctx.lake.name(SPEC))  # a new process of the new release
    ctx.lake.insert_new(newer, spark.createDataFrame([("b", 2, "new")], newer.schema))
    got = {r["id"]: r["note"] for r in ctx.lake.read(newer).collect()}
    assert got == {"a": None, "b": "new"}

    required = TableSpec(name=SPEC.name, key=SPEC.key, description=SPEC.description, schema=StructType(
        [*newer.schema.fields, StructField("must", StringType(), False)]))
    lake_module._ENSURED.discard(ctx.lake.name(SPEC))
    with pytest.raises(ConfigError, match="lacks the required column\\(s\\) must"):
        ctx.lake.ensure(required)
