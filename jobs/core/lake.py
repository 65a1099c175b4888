"""The Delta lake: one table per stage under a root path, written idempotently."""

from __future__ import annotations

from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from schemas import TABLES, TableSpec

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"

# Table paths known to exist in this process: createIfNotExists costs a Delta log read.
_ENSURED: set[str] = set()


def resolve_root(root: str) -> str:
    """Local roots become absolute paths; URIs (s3://, dbfs:/, abfss://) pass through."""
    if "://" in root or root.startswith("dbfs:"):
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


class Lake:
    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark = spark
        self.root = resolve_root(root)

    def path(self, table: str | TableSpec) -> str:
        name = table.name if isinstance(table, TableSpec) else table
        return f"{self.root}/{name}"

    def exists(self, spec: TableSpec) -> bool:
        return DeltaTable.isDeltaTable(self.spark, self.path(spec))

    def ensure(self, spec: TableSpec) -> DeltaTable:
        path = self.path(spec)
        if path in _ENSURED:
            return DeltaTable.forPath(self.spark, path)
        builder = (
            DeltaTable.createIfNotExists(self.spark)
            .location(self.path(spec))
            .addColumns(spec.schema)
            .comment(spec.description)
        )
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        table = builder.execute()
        _ENSURED.add(path)
        return table

    def ensure_all(self) -> None:
        for spec in TABLES.values():
            self.ensure(spec)

    def read(self, spec: TableSpec) -> DataFrame:
        self.ensure(spec)
        return self.spark.read.format("delta").load(self.path(spec))

    def tag_commits(self, run_id: str) -> None:
        """Every Delta commit made from now on carries the run id as userMetadata."""
        self.spark.conf.set(USER_METADATA_CONF, run_id)

    def insert_new(self, spec: TableSpec, rows: DataFrame) -> None:
        """Insert-only MERGE on the table key: re-running with the same rows adds nothing.

        The caller guarantees `rows` is unique on the key (Delta would insert both copies
        of a key repeated in the source).
        """
        target = self.ensure(spec)
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.key)
        (
            target.alias("t")
            .merge(rows.select(*spec.columns).alias("s"), condition)
            .whenNotMatchedInsertAll()
            .execute()
        )

    def update_changed(self, spec: TableSpec, rows: DataFrame, columns: list[str]) -> None:
        """MERGE-update `columns` of existing keys whose values differ; never inserts.

        Only for values derived from the table as it grows (a cluster's size when new
        members join); every other write stays insert-only. Re-running changes nothing.
        """
        target = self.ensure(spec)
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.key)
        changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns)
        (
            target.alias("t")
            .merge(rows.select(*spec.key, *columns).alias("s"), condition)
            .whenMatchedUpdate(condition=changed, set={c: f"s.`{c}`" for c in columns})
            .execute()
        )

    def append(self, spec: TableSpec, rows: DataFrame) -> None:
        """Plain append, for rows unique by construction (the `runs` log, `progress` of pending keys)."""
        self.ensure(spec)
        rows.select(*spec.columns).write.format("delta").mode("append").save(self.path(spec))

    def overwrite(self, path: str, rows: DataFrame, partition_by: str | None = None) -> None:
        """Replace a scratch table (staging) wholesale."""
        writer = rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if partition_by is not None:
            writer = writer.partitionBy(partition_by)
        writer.save(path)
