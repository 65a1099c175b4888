"""Plant seed functions straight into a lake, for tests of the stages after dedup."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.context import Context
from schemas import CLUSTERS, FUNCTIONS
from udfs.extract import FileReject, extract_file


def seed_rows(spark, names: dict[str, str]) -> DataFrame:
    """One `functions` row per name: `def name(x)` with the given docstring."""
    rows = []
    for name, doc in names.items():
        fns = extract_file(f'def {name}(x):\n    """{doc}"""\n    return x\n', 1_000_000)
        assert not isinstance(fns, FileReject)
        fn = fns[0]
        rows.append((fn.function_id, fn.name, fn.signature, fn.docstring, fn.code, fn.imports,
                     fn.line_count, fn.arg_count, fn.has_return, "0" * 40, "acme/x", f"{name}.py",
                     ["MIT"], 1, "test"))
    return spark.createDataFrame(rows, FUNCTIONS.schema)


def plant_seeds(ctx: Context, names: dict[str, str]) -> None:
    """Seeds as dedup leaves them: functions, each its own cluster's representative."""
    functions = seed_rows(ctx.spark, names)
    ctx.lake.insert_new(FUNCTIONS, functions)
    ctx.lake.insert_new(CLUSTERS, functions.select(
        "function_id", F.col("function_id").alias("cluster_id"), F.lit(1).cast("long").alias("cluster_size"),
        F.lit(True).alias("is_representative"), F.lit("test").alias("run_id")))
