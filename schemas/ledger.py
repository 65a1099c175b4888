"""Tables every stage shares: the run log, the reject log and the progress ledger."""

from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas.spec import TableSpec

RUNS = TableSpec(
    name="runs",
    schema=StructType(
        [
            StructField("run_id", StringType(), False),
            StructField("stage", StringType(), False),
            StructField("status", StringType(), False),  # running | succeeded | failed
            StructField("started_at", TimestampType(), False),
            StructField("ended_at", TimestampType(), True),
            StructField("rows_in", LongType(), True),
            StructField("rows_out", LongType(), True),
            StructField("rows_rejected", LongType(), True),
            StructField("config_fingerprint", StringType(), False),
            StructField("message", StringType(), True),
            # Added after the first release: null in rows written before them.
            StructField("rows_failed", LongType(), True),
            StructField("chunks", IntegerType(), True),
            StructField("tokens_in", LongType(), True),
            StructField("tokens_out", LongType(), True),
            StructField("engine_seconds", DoubleType(), True),
            StructField("gpu_seconds", DoubleType(), True),
            StructField("cpu_seconds", DoubleType(), True),  # of the sandboxed programs
            StructField("cost", DoubleType(), True),  # estimate from cost.*; null: no price set
        ]
    ),
    key=("run_id", "stage", "status"),
    description=(
        "Append-only event log of stage executions: a 'running' row when a stage starts and a "
        "'succeeded' or 'failed' row with timing, counts and usage (tokens, engine, GPU and "
        "sandbox CPU seconds, estimated cost; from DataFrame.observe) when it ends. "
        "A 'running' row without an end row is a crashed run."
    ),
)

REJECTS = TableSpec(
    name="rejects",
    schema=StructType(
        [
            StructField("item_id", StringType(), False),
            StructField("stage", StringType(), False),
            StructField("reason", StringType(), False),
            StructField("detail", StringType(), True),
            StructField("source_key", StringType(), False),
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("stage", "item_id"),
    partition_by=("stage",),
    description=(
        "Every row a stage dropped, with a machine-readable reason and a human detail. "
        "item_id is the dropped item (function id, or file hexsha for file-level rejects); "
        "source_key is the stage input key it came from."
    ),
)

PROGRESS = TableSpec(
    name="progress",
    schema=StructType(
        [
            StructField("stage", StringType(), False),
            StructField("input_key", StringType(), False),
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("stage", "input_key"),
    partition_by=("stage",),
    description=(
        "Input keys a stage has fully committed (outputs and rejects). Written last, so a "
        "crash between a stage's writes only means redoing idempotent work, never losing rows."
    ),
)

ERRORS = TableSpec(
    name="errors",
    schema=StructType(
        [
            StructField("stage", StringType(), False),
            StructField("item_id", StringType(), False),
            StructField("source_key", StringType(), False),
            StructField("error", StringType(), False),
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("stage", "item_id", "run_id"),
    partition_by=("stage",),
    description=(
        "Append-only log of transient failures (e.g. an LLM request that failed after its "
        "retries). The input key stays pending, so the next run retries it."
    ),
)

INPUTS = TableSpec(
    name="inputs",
    schema=StructType(
        [
            StructField("path", StringType(), False),
            StructField("size", LongType(), False),
            StructField("modified_ms", LongType(), False),
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("path", "size", "modified_ms"),
    description=(
        "Input files extract has consumed (path, size, modification time). A run reads only "
        "listed files not in here: new ones, and rewritten ones (another size or time). The "
        "hexsha anti-join against `progress` stays the safety net."
    ),
)
