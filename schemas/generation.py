"""Tables of the LLM stages. Every generated row carries model, prompt version and sampling."""

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from schemas.spec import TableSpec

# Lineage of a generated row: which model, prompt and sampling parameters made it.
GENERATION_FIELDS = [
    StructField("model", StringType(), False),
    StructField("prompt_version", StringType(), False),
    StructField("sampling", StringType(), False),  # JSON of the sampling parameters
    StructField("run_id", StringType(), False),
]

QUALITY = TableSpec(
    name="quality",
    schema=StructType(
        [
            StructField("function_id", StringType(), False),
            StructField("good", BooleanType(), True),  # null: the answer was unparseable
            StructField("raw_output", StringType(), True),
            *GENERATION_FIELDS,
        ]
    ),
    key=("function_id",),
    description=(
        "The base model's 7-shot Yes/No judgement of each seed candidate's docstring, with its "
        "raw output. good=true rows are the seeds."
    ),
)

CONCEPTS = TableSpec(
    name="concepts",
    schema=StructType(
        [
            StructField("seed_id", StringType(), False),
            StructField("concepts", ArrayType(StringType()), False),
            StructField("raw_output", StringType(), True),
            *GENERATION_FIELDS,
        ]
    ),
    key=("seed_id",),
    description="Self-OSS-Instruct step 1: the programming concepts the model sees in each seed.",
)

INSTRUCTIONS = TableSpec(
    name="instructions",
    schema=StructType(
        [
            StructField("instruction_id", StringType(), False),
            StructField("seed_id", StringType(), False),
            StructField("category", StringType(), False),
            StructField("difficulty", StringType(), False),
            StructField("concepts", ArrayType(StringType()), False),
            StructField("instruction", StringType(), False),
            *GENERATION_FIELDS,
        ]
    ),
    key=("instruction_id",),
    description=(
        "Self-OSS-Instruct step 2: a self-contained coding task from a seed's concepts, with the "
        "deterministically sampled category and difficulty."
    ),
)

RESPONSES = TableSpec(
    name="responses",
    schema=StructType(
        [
            StructField("response_id", StringType(), False),
            StructField("instruction_id", StringType(), False),
            StructField("sample_index", IntegerType(), False),
            StructField("response", StringType(), False),
            StructField("code", StringType(), True),
            StructField("tests", StringType(), True),
            StructField("missing", ArrayType(StringType()), False),  # parts the parser did not find
            StructField("finish_reason", StringType(), True),
            StructField("completion_tokens", IntegerType(), True),
            *GENERATION_FIELDS,
        ]
    ),
    key=("response_id",),
    description=(
        "n sampled responses per instruction (reasoning, implementation, explanation, tests), "
        "parsed into code and tests; a sample missing either is kept with `missing` set."
    ),
)
