from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from schemas.spec import TableSpec

# Lineage back to the source file, carried by every seed-derived table.
SOURCE_FIELDS = [
    StructField("hexsha", StringType(), False),
    StructField("repo", StringType(), True),
    StructField("path", StringType(), True),
    StructField("licenses", ArrayType(StringType()), True),
    StructField("stars", LongType(), True),
]

FUNCTIONS = TableSpec(
    name="functions",
    schema=StructType(
        [
            StructField("function_id", StringType(), False),
            StructField("name", StringType(), False),
            StructField("signature", StringType(), False),
            StructField("docstring", StringType(), False),
            StructField("code", StringType(), False),
            StructField("imports", StringType(), False),
            StructField("line_count", IntegerType(), False),
            StructField("arg_count", IntegerType(), False),
            StructField("has_return", BooleanType(), False),
            *SOURCE_FIELDS,
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("function_id",),
    description=(
        "Top-level Python functions with a docstring that passed the extract heuristics. "
        "function_id = sha256 of the whitespace-normalized code; `imports` holds the "
        "module-level import lines the function uses, so it type-checks on its own."
    ),
)
