"""SparkSession factory.

On a cluster (Databricks, EMR, spark-submit) the session already exists or is
configured by the launcher: we take it as is and never override cluster settings.
Only for the embedded local default do we build one, with Delta wired in and the
Delta jars cached in a project-local Ivy directory so later runs start offline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.core.config import SparkConfig

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def launched_by_cluster() -> bool:
    """True when a launcher (spark-submit, Databricks, EMR) owns the Spark config."""
    markers = ("PYSPARK_GATEWAY_PORT", "DATABRICKS_RUNTIME_VERSION", "SPARK_CONNECT_MODE_ENABLED")
    return any(name in os.environ for name in markers)


def _manifest(ivy: Path) -> Path:
    return ivy / "selfalign-jars.txt"


def cached_jars(cfg: SparkConfig) -> list[str] | None:
    """Jar paths resolved by an earlier run for the same package, if all still exist."""
    manifest = _manifest(Path(cfg.ivy_dir).expanduser().resolve())
    if not manifest.is_file():
        return None
    package, *jars = manifest.read_text().split()
    if package != cfg.delta_package or not jars:
        return None
    return jars if all(Path(j.removeprefix("file://")).is_file() for j in jars) else None


def remember_jars(spark: SparkSession, cfg: SparkConfig) -> None:
    """Record what Ivy resolved, so the next session skips resolution and starts offline."""
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    if jars:
        manifest = _manifest(Path(cfg.ivy_dir).expanduser().resolve())
        manifest.write_text("\n".join([cfg.delta_package, *jars.split(",")]) + "\n")


def local_builder(cfg: SparkConfig) -> SparkSession.Builder:
    ivy = Path(cfg.ivy_dir).expanduser().resolve()
    jars = cached_jars(cfg)
    # Workers must run the driver's interpreter, or they miss the project's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.jars.ivy", str(ivy))
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.default.parallelism", str(cfg.shuffle_partitions))
        # Delta's snapshot reconstruction defaults to 50 partitions: minutes of overhead locally.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.arrow_batch_rows))
        .config("spark.ui.enabled", str(cfg.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("SELFALIGN_DRIVER_MEMORY", "4g"))
        .config("spark.sql.session.timeZone", "UTC")
    )
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    else:
        builder = builder.config("spark.jars.packages", cfg.delta_package)
    for key, value in cfg.extra.items():
        builder = builder.config(key, value)
    return builder


def get_spark(cfg: SparkConfig) -> SparkSession:
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if launched_by_cluster():
        return SparkSession.builder.appName(cfg.app_name).getOrCreate()
    spark = local_builder(cfg).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if cached_jars(cfg) is None:
        remember_jars(spark, cfg)
    return spark


def main() -> None:
    """`python -m jobs.core.session`: resolve and remember the Delta jars of the default config.

    Run once when building an image or before parallel jobs share one Ivy cache, so
    two JVMs never resolve into it at the same time; later starts are offline.
    """
    from jobs.core.config import load_config

    cfg = load_config(None, [])
    if cached_jars(cfg.spark) is None:
        get_spark(cfg.spark).stop()
    print(f"delta jars: {len(cached_jars(cfg.spark) or [])} cached under {cfg.spark.ivy_dir}")


if __name__ == "__main__":
    main()
