"""The Delta lake: one table per stage, written idempotently.

A table is addressed by one SQL identifier: `delta.`<root>/<table>`` for a lake at a path
(the default), or `catalog.schema.table` when `lake.schema` is set (Unity Catalog, Glue, a
Hive metastore), its files still at <root>/<table>. Every read and write goes through that
identifier with SQL or the DataFrame API, never the `delta.tables.DeltaTable` Python API:
that needs a Delta Connect plugin on a Spark Connect server, SQL MERGE only the Delta
session extension, so the same code runs on classic Spark and through Connect.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from jobs.core.config import ConfigError
from jobs.core.sections import LakeConfig
from schemas import TABLES, TableSpec

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
SESSION_CATALOG = "spark_catalog"

# Identifiers known to exist in this process: CREATE TABLE IF NOT EXISTS costs a Delta log
# (or catalog) read. Creating is serialized: two threads creating one Delta table would
# both try to commit its version 0 (status runs its queries side by side).
_ENSURED: set[str] = set()
_CREATING = threading.Lock()


def resolve_root(root: str) -> str:
    """Local roots become absolute paths; URIs (s3://, dbfs:/, abfss://) pass through."""
    if "://" in root or root.startswith("dbfs:"):
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def column_ddl(spec: TableSpec) -> str:
    # simpleString keeps nested types (array<string>); NOT NULL is the one thing it drops.
    return ", ".join(f"{quote(f.name)} {f.dataType.simpleString()}{'' if f.nullable else ' NOT NULL'}"
                     for f in spec.schema.fields)


class Lake:
    def __init__(self, spark: SparkSession, root: str, catalog: str | None = None,
                 schema: str | None = None) -> None:
        self.spark = spark
        self.root = resolve_root(root)
        self.catalog = catalog
        self.schema = schema

    @classmethod
    def from_config(cls, spark: SparkSession, cfg: LakeConfig) -> Lake:
        return cls(spark, cfg.root, cfg.catalog, cfg.schema)

    @property
    def namespace(self) -> str | None:
        """`catalog.schema` (or `schema`) quoted, when tables live in a catalog."""
        if self.schema is None:
            return None
        return ".".join(quote(p) for p in (self.catalog, self.schema) if p is not None)

    def describe(self) -> str:
        """Where the tables are, for people: the root, or the schema and the root."""
        return self.root if self.namespace is None else f"{self.namespace} (files under {self.root})"

    def write_problem(self) -> str | None:
        """Why a run could not write under the root (a file, not writable), or None.

        Three calls of the driver's Hadoop FileSystem (mkdirs, create, delete): a run that
        cannot write says so before its first stage, not as a Java exception mid-way.
        Through Spark Connect there is no driver JVM here: the stages' own errors tell.
        """
        context: Any = self.spark.sparkContext if hasattr(self.spark, "_jsparkSession") else None
        if context is None:
            return None
        jvm: Any = context._jvm
        conf: Any = self.spark._jsparkSession.sessionState().newHadoopConf()  # type: ignore[attr-defined]
        root = jvm.org.apache.hadoop.fs.Path(self.root)
        try:
            fs = root.getFileSystem(conf)
            if _is_file(fs, root):
                return f"lake.root {self.root} is a file, not a directory"
            probe = jvm.org.apache.hadoop.fs.Path(f"{self.root}/_staging/.write-check-{uuid.uuid4().hex}")
            fs.create(probe, True).close()
            fs.delete(probe, False)
        except Exception as exc:  # py4j's error wraps the Java one
            java = getattr(exc, "java_exception", None)
            reason = str(java.toString()) if java is not None else str(exc)
            return f"lake.root {self.root} cannot be written: {reason.splitlines()[0][:300]}"
        return None

    def path(self, table: str | TableSpec) -> str:
        """Where the table's files are (its LOCATION in a catalog too)."""
        return f"{self.root}/{_name(table)}"

    def name(self, table: str | TableSpec) -> str:
        """The table's SQL identifier, for spark.sql, spark.read.table and writeTo."""
        if self.namespace is None:
            return f"delta.{quote(self.path(table))}"
        return f"{self.namespace}.{quote(_name(table))}"

    def exists(self, table: str | TableSpec) -> bool:
        try:
            return self.spark.catalog.tableExists(self.name(table))
        except AnalysisException as exc:
            # Delta answers for a path identifier, and a path without a table is an error.
            if self.namespace is None and exc.getCondition() == "DELTA_MISSING_DELTA_TABLE":
                return False
            raise

    def peek(self, table: str | TableSpec) -> DataFrame | None:
        """The table if it exists, never creating it (status, report, tests)."""
        return self.spark.read.table(self.name(table)) if self.exists(table) else None

    def ensure(self, spec: TableSpec) -> str:
        """Create the table if missing (schema, partitioning, comment); returns its identifier."""
        ident = self.name(spec)
        if ident in _ENSURED:
            return ident
        with _CREATING:
            if ident not in _ENSURED:
                self._create(spec, ident)
                _ENSURED.add(ident)
        return ident

    def _create(self, spec: TableSpec, ident: str) -> None:
        self._ensure_namespace()
        partitioned = f" PARTITIONED BY ({', '.join(map(quote, spec.partition_by))})" if spec.partition_by else ""
        # External tables at root/table: a path lake is adopted by a catalog without a copy,
        # stays readable by path, and dropping a catalog entry never deletes data.
        location = f" LOCATION {literal(self.path(spec))}" if self.namespace else ""
        self.spark.sql(f"CREATE TABLE IF NOT EXISTS {ident} ({column_ddl(spec)}) USING delta"
                       f"{partitioned} COMMENT {literal(spec.description)}{location}")
        self._add_new_columns(spec, ident)

    def _add_new_columns(self, spec: TableSpec, ident: str) -> None:
        """A lake made by an earlier release lacks columns added since (nullable ones
        only): add them, so its tables take the new rows; old rows read them as null."""
        present = {field.name for field in self.spark.table(ident).schema.fields}
        missing = [field for field in spec.schema.fields if field.name not in present]
        if not missing:
            return
        required = [field.name for field in missing if not field.nullable]
        if required:
            raise ConfigError(f"lake: table {spec.name} at {self.path(spec)} lacks the required "
                              f"column(s) {', '.join(required)} of this release: rebuild it")
        columns = ", ".join(f"{quote(f.name)} {f.dataType.simpleString()}" for f in missing)
        self.spark.sql(f"ALTER TABLE {ident} ADD COLUMNS ({columns})")

    def _ensure_namespace(self) -> None:
        namespace = self.namespace
        if namespace is None or namespace in _ENSURED:
            return
        self._refuse_in_memory_catalog()
        # Check before creating: on Unity Catalog, CREATE SCHEMA needs a privilege that
        # using an existing schema does not.
        if not self.spark.catalog.databaseExists(".".join(p for p in (self.catalog, self.schema) if p)):
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
        _ENSURED.add(namespace)

    def _refuse_in_memory_catalog(self) -> None:
        if self.catalog not in (None, SESSION_CATALOG):
            return  # a catalog plugin (Unity Catalog, Glue, Iceberg REST) keeps its own state
        try:
            kind = self.spark.conf.get("spark.sql.catalogImplementation")
        except Exception:  # a server that hides its static settings (Databricks serverless)
            return
        if kind == "in-memory":
            raise ConfigError(
                f"config: lake.schema '{self.schema}' needs a persistent catalog (Hive metastore, "
                "Glue, Unity Catalog) but this Spark session's catalog is in-memory: start Spark "
                "with Hive support (spark.sql.catalogImplementation=hive) or unset lake.schema")

    def ensure_all(self) -> None:
        for spec in TABLES.values():
            self.ensure(spec)

    def read(self, spec: TableSpec) -> DataFrame:
        return self.spark.read.table(self.ensure(spec))

    def read_version(self, spec: TableSpec, version: int) -> DataFrame:
        """The table as of one Delta version (time travel): what a consumer pins to."""
        return self.spark.sql(f"SELECT * FROM {self.ensure(spec)} VERSION AS OF {int(version)}")

    def history(self, spec: TableSpec, limit: int | None = None) -> DataFrame:
        """The table's Delta commits, newest first (version, operation, userMetadata, ...)."""
        newest = f" LIMIT {int(limit)}" if limit is not None else ""
        return self.spark.sql(f"DESCRIBE HISTORY {self.ensure(spec)}{newest}")

    def tag_commits(self, run_id: str) -> None:
        """Every Delta commit made from now on carries the run id as userMetadata."""
        self.spark.conf.set(USER_METADATA_CONF, run_id)

    def insert_new(self, spec: TableSpec, rows: DataFrame) -> None:
        """Insert-only MERGE on the table key: re-running with the same rows adds nothing.

        The caller guarantees `rows` is unique on the key (Delta would insert both copies
        of a key repeated in the source).
        """
        condition = " AND ".join(f"t.{quote(k)} <=> s.{quote(k)}" for k in spec.key)
        self._merge(spec, rows.select(*spec.columns), condition, "WHEN NOT MATCHED THEN INSERT *")

    def update_changed(self, spec: TableSpec, rows: DataFrame, columns: list[str]) -> None:
        """MERGE-update `columns` of existing keys whose values differ; never inserts.

        Only for values derived from the table as it grows (a cluster's size when new
        members join); every other write stays insert-only. Re-running changes nothing.
        """
        condition = " AND ".join(f"t.{quote(k)} <=> s.{quote(k)}" for k in spec.key)
        changed = " OR ".join(f"NOT (t.{quote(c)} <=> s.{quote(c)})" for c in columns)
        assign = ", ".join(f"t.{quote(c)} = s.{quote(c)}" for c in columns)
        self._merge(spec, rows.select(*spec.key, *columns), condition,
                    f"WHEN MATCHED AND ({changed}) THEN UPDATE SET {assign}")

    def _merge(self, spec: TableSpec, source: DataFrame, condition: str, action: str) -> None:
        target = self.ensure(spec)
        # A uniquely named view: SQL MERGE takes its source by name.
        view = f"_selfalign_{spec.name}_{uuid.uuid4().hex[:12]}"
        source.createOrReplaceTempView(view)
        try:
            self.spark.sql(f"MERGE INTO {target} t USING {quote(view)} s ON {condition} {action}")
        finally:
            self.spark.catalog.dropTempView(view)

    def append(self, spec: TableSpec, rows: DataFrame) -> None:
        """Plain append, for rows unique by construction (the `runs` log, `progress` of pending keys)."""
        rows.select(*spec.columns).writeTo(self.ensure(spec)).append()


def _is_file(fs: Any, path: Any) -> bool:
    """One status call, not exists() then getFileStatus(): on object storage a "directory"
    is only a prefix, and it vanishes between the two calls when another run on the same
    lake deletes the last object under it (its own write probe)."""
    try:
        return not fs.getFileStatus(path).isDirectory()
    except Exception as exc:
        java = getattr(exc, "java_exception", None)
        if java is not None and java.getClass().getName() == "java.io.FileNotFoundException":
            return False  # nothing there yet: the probe below creates it
        raise


def _name(table: str | TableSpec) -> str:
    return table.name if isinstance(table, TableSpec) else table
