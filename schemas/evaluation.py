"""Tables of `selfalign evaluate`: every tested completion, and the pass@k figures."""

from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from schemas.spec import TableSpec

EVAL_SAMPLES = TableSpec(
    name="eval_samples",
    schema=StructType(
        [
            # Hash of what decides a verdict: model (or "reference"), decoding, prompt format,
            # sandbox and time limits. Re-running the same evaluation resumes it.
            StructField("eval_id", StringType(), False),
            StructField("benchmark", StringType(), False),  # humaneval|humanevalplus|mbpp|mbppplus
            StructField("task_id", StringType(), False),
            StructField("decoding", StringType(), False),  # greedy | sampled | reference
            StructField("sample_index", IntegerType(), False),
            StructField("model", StringType(), False),
            StructField("completion", StringType(), True),
            StructField("finish_reason", StringType(), True),
            # A sandbox status (pass, fail, timeout, memory, crash, sandbox-error), or
            # reference-error (the ground truth failed) or generation-error.
            StructField("status", StringType(), False),
            StructField("detail", StringType(), True),  # why it failed, one line
            StructField("passed", BooleanType(), False),  # the set's figure: plus for the + sets
            StructField("base_passed", BooleanType(), False),
            StructField("plus_passed", BooleanType(), True),  # null for humaneval and mbpp
            StructField("duration_s", DoubleType(), True),
            StructField("sampling", StringType(), True),  # JSON of the sampling parameters
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("eval_id", "benchmark", "task_id", "decoding", "sample_index"),
    description=(
        "One row per completion tested by `selfalign evaluate`: the completion, the sandbox "
        "verdict on the task's tests (base) and, for HumanEval+/MBPP+, on the extra inputs (plus)."
    ),
)

EVAL_RESULTS = TableSpec(
    name="eval_results",
    schema=StructType(
        [
            StructField("run_id", StringType(), False),
            StructField("eval_id", StringType(), False),
            StructField("model", StringType(), False),
            StructField("benchmark", StringType(), False),
            StructField("variant", StringType(), False),  # base | plus
            StructField("decoding", StringType(), False),  # greedy | sampled | reference
            StructField("k", IntegerType(), False),
            StructField("pass_at_k", DoubleType(), False),  # mean unbiased pass@k, 0..1
            StructField("n_tasks", IntegerType(), False),
            StructField("n_samples", IntegerType(), False),
        ]
    ),
    key=("run_id", "benchmark", "variant", "decoding", "k"),
    description=(
        "pass@k per set, variant and decoding of each `selfalign evaluate` run, over eval_samples "
        "(EvalPlus's figures: HumanEval+ base = HumanEval, HumanEval+ plus = HumanEval+)."
    ),
)
