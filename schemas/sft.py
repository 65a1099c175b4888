"""Tables of the last stages: sandbox verdicts on responses, and the SFT pairs chosen from them."""

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from schemas.spec import TableSpec

EXECUTIONS = TableSpec(
    name="executions",
    schema=StructType(
        [
            StructField("response_id", StringType(), False),
            StructField("instruction_id", StringType(), False),
            # pass | fail | timeout | memory | crash (a sandbox-error is retried, never stored)
            StructField("status", StringType(), False),
            StructField("passed", BooleanType(), False),
            StructField("duration_s", DoubleType(), True),
            StructField("isolation", StringType(), True),  # bwrap | netns | process
            StructField("exit_code", IntegerType(), True),  # negative: killed by that signal
            StructField("stdout_tail", StringType(), True),
            StructField("stderr_tail", StringType(), True),
            StructField("detail", StringType(), True),  # why, in words, for anything but a pass
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("response_id",),
    description=(
        "The sandbox's verdict on every runnable response (its code, then its own tests). "
        "passed = exit code 0 and the completion marker printed after the last test. "
        "Failed runs are also rejects (execution_<status>)."
    ),
)

SFT = TableSpec(
    name="sft",
    schema=StructType(
        [
            StructField("instruction_id", StringType(), False),
            StructField("instruction", StringType(), False),
            StructField("response", StringType(), False),  # section headings stripped
            StructField("response_id", StringType(), False),
            StructField("seed_id", StringType(), False),
            # Lineage back to the seed's source file.
            StructField("hexsha", StringType(), True),
            StructField("repo", StringType(), True),
            StructField("path", StringType(), True),
            StructField("licenses", ArrayType(StringType()), True),
            StructField("concepts", ArrayType(StringType()), True),
            StructField("category", StringType(), True),
            StructField("difficulty", StringType(), True),
            # Lineage of the generation: the response's model, prompt and sampling, and the
            # prompt version and model that wrote the instruction.
            StructField("model", StringType(), False),
            StructField("prompt_version", StringType(), False),
            StructField("sampling", StringType(), True),
            StructField("instruction_model", StringType(), True),
            StructField("instruction_prompt_version", StringType(), True),
            # The sanitizing choices made for this pair (JSON; null when select.sanitize
            # is off): tests_kept, reasoning_dropped, explanation_dropped,
            # asserts_in_instruction, comments_stripped.
            StructField("sanitizing", StringType(), True),
            # The keys the published global cleaning checks a new pair against (sha256 of
            # the whitespace-free instruction and response as chosen, and of the function
            # names its first code block defines; udfs/diversify.py); null when that code
            # does not parse.
            StructField("dedup_keys", ArrayType(StringType()), True),
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("instruction_id",),
    description=(
        "The instruction-tuning pairs: per instruction one passing response, drawn with a "
        "seed derived from the instruction id; exact and near-duplicate instructions and "
        "exact duplicate responses dropped."
    ),
)
