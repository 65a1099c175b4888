"""SparkSession factory.

On a cluster (Databricks, EMR, spark-submit) the session already exists or is
configured by the launcher: we take it as is and never override cluster settings.
Only for the embedded local default do we build one, with Delta wired in and the
Delta jars cached in a project-local Ivy directory so later runs start offline; with
lake.schema set, also with Hive support over an embedded Derby metastore, so catalog
tables outlive the session. With spark.remote (or SPARK_REMOTE) we connect to a Spark
Connect server instead (Databricks serverless and shared clusters).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.core.config import ConfigError
from jobs.core.sections import LakeConfig, SparkConfig

log = logging.getLogger("selfalign")

APP_NAME = "selfalign"  # spark.extra."spark.app.name" names it otherwise (local mode)
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def launched_by_cluster() -> bool:
    """True when a launcher (spark-submit, Databricks, EMR) owns the Spark config."""
    markers = ("PYSPARK_GATEWAY_PORT", "DATABRICKS_RUNTIME_VERSION", "SPARK_CONNECT_MODE_ENABLED")
    return any(name in os.environ for name in markers)


def delta_coordinate(delta: str, spark: str) -> str:
    """The Maven coordinate of delta-spark `delta` built for pyspark `spark`.

    Delta 3.x is built for Spark 3.5 with Scala 2.12, Delta 4.0 for Spark 4.0 with Scala
    2.13; from 4.1 on, each Spark minor has its own artifact (delta-spark_4.2_2.13), as
    delta-spark's own configure_spark_with_delta_pip names it.
    """
    major, minor = (int(part) for part in re.findall(r"\d+", delta)[:2])
    if major < 4:
        artifact = "delta-spark_2.12"
    elif (major, minor) == (4, 0):
        artifact = "delta-spark_2.13"
    else:
        artifact = f"delta-spark_{'.'.join(spark.split('.')[:2])}_2.13"
    return f"io.delta:{artifact}:{delta}"


def delta_package(cfg: SparkConfig) -> str:
    """spark.delta_package, else the coordinate of the installed delta-spark and pyspark."""
    if cfg.delta_package:
        return cfg.delta_package
    try:
        return delta_coordinate(metadata.version("delta-spark"), metadata.version("pyspark"))
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(f"spark: {exc.name} is not installed: install the `spark` extra "
                          "(pip install 'selfalign[spark]') or set spark.delta_package") from None


# The AWS SDK v2 release each Hadoop release's hadoop-aws is built against
# (hadoop-project's aws-java-sdk-v2.version): pyspark 4.0 bundles Hadoop 3.4.1, 4.2 3.5.0.
# 3.4.1's is 2.24.6, a release Maven Central has no s3-transfer-manager of: 2.24.8.
AWS_SDK_FOR_HADOOP = {"3.4.1": "2.24.8", "3.4.2": "2.29.52", "3.5.0": "2.35.4"}


def hadoop_version() -> str:
    """The Hadoop release inside the installed pyspark (its hadoop-client-api jar)."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    found = [m.group(1) for jar in jars.glob("hadoop-client-api-*.jar")
             if (m := re.fullmatch(r"hadoop-client-api-(.+)\.jar", jar.name))]
    if not found:
        raise ConfigError(f"spark: no hadoop-client-api jar under {jars}: set spark.packages "
                          "to the hadoop-aws coordinates yourself")
    return found[0]


def s3a_packages() -> list[str]:
    """hadoop-aws of the installed Hadoop with the few AWS SDK modules S3A uses.

    hadoop-aws depends on the SDK's `bundle` (686 MB for 2.35.4, every AWS service):
    `spark.jars.excludes` drops it and these modules (about 15 MB) replace it.
    """
    hadoop = hadoop_version()
    sdk = AWS_SDK_FOR_HADOOP.get(hadoop)
    if sdk is None:
        raise ConfigError(f"spark: no known AWS SDK for Hadoop {hadoop}: set spark.packages to "
                          "org.apache.hadoop:hadoop-aws:<version> and its SDK modules")
    return [f"org.apache.hadoop:hadoop-aws:{hadoop}", f"software.amazon.awssdk:s3:{sdk}",
            f"software.amazon.awssdk:s3-transfer-manager:{sdk}"]


S3A_EXCLUDES = "software.amazon.awssdk:bundle"


def packages(cfg: SparkConfig) -> list[str]:
    """The Maven coordinates local mode loads: Delta, S3A when asked, spark.packages."""
    s3a = s3a_packages() if cfg.s3a_jars else []
    return [delta_package(cfg), *s3a, *cfg.packages]


def _manifest(cfg: SparkConfig) -> Path:
    # One per package set: venvs of two Spark versions can share one Ivy cache.
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", delta_package(cfg))
    extra = packages(cfg)[1:]
    if extra:
        name += "-" + hashlib.sha256(",".join(extra).encode()).hexdigest()[:12]
    return Path(cfg.ivy_dir).expanduser().resolve() / f"selfalign-jars-{name}.txt"


def cached_jars(cfg: SparkConfig) -> list[str] | None:
    """Jar paths resolved by an earlier run for the same packages, if all still exist.

    A set without S3A's jars is also served by the same set with them (the extra jars sit
    unused on the classpath): one resolution, e.g. `make test`'s, serves both.
    """
    found = _cached_exactly(cfg)
    if found is None and not cfg.s3a_jars:
        with contextlib.suppress(ConfigError):  # no known S3A set for this Hadoop
            found = _cached_exactly(cfg.model_copy(update={"s3a_jars": True}))
    return found


def _cached_exactly(cfg: SparkConfig) -> list[str] | None:
    manifest = _manifest(cfg)
    if not manifest.is_file():
        return None
    package, *jars = manifest.read_text().split()
    if package != ",".join(packages(cfg)) or not jars:
        return None
    return jars if all(Path(j.removeprefix("file://")).is_file() for j in jars) else None


def ensure_jars(cfg: SparkConfig) -> None:
    """Resolve the Delta jars once, in a child process whose Ivy chatter (a hundred lines
    of resolver reports and unreachable repositories) is kept out of sight: one line
    says it happens, and a failure is one line with Ivy's own reason."""
    if cached_jars(cfg) is not None:
        return
    log.info("fetching %s from Maven Central into %s (once; later runs start offline)",
             ", ".join(packages(cfg)), cfg.ivy_dir)
    command = [sys.executable, "-m", "jobs.core.session", "--resolve",
               f"spark.delta_package={delta_package(cfg)}", f"spark.ivy_dir={cfg.ivy_dir}",
               f"spark.s3a_jars={str(cfg.s3a_jars).lower()}",
               f"spark.packages=[{','.join(cfg.packages)}]"]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or cached_jars(cfg) is None:
        lines = [line.strip(" :\t") for line in (done.stderr + done.stdout).splitlines()]
        # Ivy's most specific line first: "io.delta#x;1.0: not found", then a Java error.
        why = next((line for marker in (": not found", "unresolved dependency", "Exception")
                    for line in lines if marker in line), f"exit code {done.returncode}")
        raise ConfigError(f"spark: cannot fetch {', '.join(packages(cfg))} ({why}): with no access to "
                          "Maven Central, copy a .ivy directory from a machine that has one "
                          "and point spark.ivy_dir at it")


def remember_jars(spark: SparkSession, cfg: SparkConfig) -> None:
    """Record what Ivy resolved, so the next session skips resolution and starts offline."""
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    if jars:
        _manifest(cfg).write_text("\n".join([",".join(packages(cfg)), *jars.split(",")]) + "\n")


LOG4J2_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "log4j2.properties"


# Local mode runs tasks and the driver in one JVM on a few cores: G1's concurrent
# marking and refinement threads compete with the tasks for those cores. With the class
# cache (local_conf), the serial collector makes the seed stages cost 9-14% less CPU
# (bench/local_jvm.py); a user who names a collector in spark.driver.extraJavaOptions
# (a large local heap) gets theirs instead.
LOCAL_GC = "-XX:+UseSerialGC"
_NAMES_A_COLLECTOR = re.compile(r"-XX:\+Use\w+GC\b")


def java_options(cfg: SparkConfig, *more: str) -> str:
    """JVM options of the local driver: our log4j2 configuration and collector, then the
    user's own."""
    own = cfg.extra.get("spark.driver.extraJavaOptions")
    collector = None if own and _NAMES_A_COLLECTOR.search(own) else LOCAL_GC
    return " ".join(filter(None, [f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}",
                                  collector, own, *more]))


def local_conf(cfg: SparkConfig) -> dict[str, str]:
    """The Spark settings of the embedded local session (a local Connect server takes them too)."""
    jars = cached_jars(cfg)
    conf = {
        "spark.jars.ivy": str(Path(cfg.ivy_dir).expanduser().resolve()),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.pyspark.python": sys.executable,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.default.parallelism": str(cfg.shuffle_partitions),
        # Delta's snapshot reconstruction defaults to 50 partitions: minutes of overhead locally.
        "spark.databricks.delta.snapshotPartitions": "2",
        # Spark keeps 100 compiled query classes by default; one DAG run generates ~1,250,
        # so stage after stage and chunk after chunk recompiles the same plans (Janino, then
        # the JIT again). 4,000 keeps a night's set: a tiny DAG run compiles ~800 classes
        # instead of ~1,250, and a second run in the same JVM almost none (bench/local_jvm.py).
        "spark.sql.codegen.cache.maxEntries": "4000",
        # ...and even a cached class costs its source: every task that builds a projection
        # generates the code and strips its comments (a regex over it) before the cache
        # lookup. Delta's log replay does that for its deeply nested action schema in every
        # task of every table read and commit: a fifth of a short local run's JVM CPU
        # (a profile of the DAG test). Local mode's data is small, so interpreted
        # projections and no whole-stage code cost less (bench/local_jvm.py); clusters keep
        # Spark's default. (An internal Spark key; NO_CODEGEN also turns whole-stage code off.)
        "spark.sql.codegen.factoryMode": "NO_CODEGEN",
        # Chunk commits and the transforms running ahead share the cores (jobs/core/runner.py).
        "spark.scheduler.mode": "FAIR",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "500",  # source files are large strings
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": os.environ.get("SELFALIGN_DRIVER_MEMORY", "4g"),
        "spark.sql.session.timeZone": "UTC",
    }
    if jars:
        conf["spark.jars"] = ",".join(jars)
    else:
        conf["spark.jars.packages"] = ",".join(packages(cfg))
        if cfg.s3a_jars:
            conf["spark.jars.excludes"] = S3A_EXCLUDES
    return {**conf, **cfg.extra, "spark.driver.extraJavaOptions": java_options(cfg)}


def local_builder(cfg: SparkConfig) -> SparkSession.Builder:
    # Workers must run the driver's interpreter, or they miss the project's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(cfg.master).appName(APP_NAME)
    for key, value in local_conf(cfg).items():
        builder = builder.config(key, value)
    return builder


def metastore_dir(cfg: SparkConfig, lake: LakeConfig) -> Path:
    """Where the local catalog keeps its Derby metastore and warehouse: never the cwd."""
    if cfg.metastore_dir is not None:
        return Path(cfg.metastore_dir).expanduser().resolve()
    if "://" in lake.root or lake.root.startswith("dbfs:"):
        raise ConfigError(f"config: key 'spark.metastore_dir': lake.root {lake.root!r} is not local; "
                          "the local Hive metastore needs a local directory")
    return Path(lake.root).expanduser().resolve() / "_metastore"


def with_metastore(builder: SparkSession.Builder, cfg: SparkConfig, lake: LakeConfig) -> SparkSession.Builder:
    """Hive support over an embedded Derby metastore under metastore_dir."""
    home = metastore_dir(cfg, lake)
    home.mkdir(parents=True, exist_ok=True)
    # derby.log goes to derby.system.home, else the cwd; keep any JVM options the user set.
    options = java_options(cfg, f"-Dderby.system.home={home}")
    return (
        builder.enableHiveSupport()
        .config("spark.sql.warehouse.dir", str(home / "warehouse"))
        .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true")
        .config("spark.driver.extraJavaOptions", options)
    )


def remote_url(cfg: SparkConfig) -> str | None:
    return cfg.remote or os.environ.get("SPARK_REMOTE") or None


def get_spark(cfg: SparkConfig, lake: LakeConfig | None = None) -> SparkSession:
    remote = remote_url(cfg)
    if remote is not None:
        # The server owns every Spark setting; a classic session already running in this
        # process is an error pyspark reports (one process talks to one kind of Spark).
        spark = SparkSession.builder.remote(remote).getOrCreate()
        log.info("Spark Connect at %s: SparkContext extras (job descriptions) are skipped",
                 remote.split("/;", 1)[0])  # never the parameters: they may hold a token
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if launched_by_cluster():
        return SparkSession.builder.appName(APP_NAME).getOrCreate()
    ensure_jars(cfg)
    builder = local_builder(cfg)
    if lake is not None and lake.schema is not None:
        builder = with_metastore(builder, cfg, lake)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if cached_jars(cfg) is None:
        remember_jars(spark, cfg)
    return spark


def main(argv: list[str] | None = None) -> None:
    """`python -m jobs.core.session [KEY=VALUE...]`: resolve and remember the jars of the
    default config (with overrides: `spark.s3a_jars=true` adds S3A's).

    Run once when building an image or before parallel jobs share one Ivy cache, so
    two JVMs never resolve into it at the same time; later starts are offline.
    `--resolve KEY=VALUE...` is the child process of `ensure_jars`: it resolves in place.
    `--package` prints the Delta coordinate (for spark-submit --packages).
    """
    from jobs.core.config import load_config

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--resolve"]:
        cfg = load_config(None, args[1:])
        spark = local_builder(cfg.spark).getOrCreate()
        remember_jars(spark, cfg.spark)
        spark.stop()
        return
    if args[:1] == ["--package"]:
        print(delta_package(load_config(None, []).spark))
        return
    cfg = load_config(None, args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ensure_jars(cfg.spark)
    print(f"jars: {len(cached_jars(cfg.spark) or [])} cached under {cfg.spark.ivy_dir} "
          f"({', '.join(packages(cfg.spark))})")


if __name__ == "__main__":
    main()
