"""Verdict tables of the seed filters: decontaminate, typecheck, dedup."""

from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from schemas.spec import TableSpec

DECONTAMINATION = TableSpec(
    name="decontamination",
    schema=StructType(
        [
            StructField("function_id", StringType(), False),
            StructField("contaminated", BooleanType(), False),
            StructField("benchmark", StringType(), True),
            StructField("task_id", StringType(), True),
            StructField("rule", StringType(), True),  # substring | ngram
            StructField("matched_text", StringType(), True),
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("function_id",),
    description=(
        "Benchmark-overlap verdict for every function checked: contaminated ones name the "
        "benchmark, task and the matched text (normalized substring or shared token n-gram)."
    ),
)

TYPECHECK = TableSpec(
    name="typecheck",
    schema=StructType(
        [
            StructField("function_id", StringType(), False),
            StructField("passed", BooleanType(), False),
            StructField("rule", StringType(), True),
            StructField("message", StringType(), True),
            StructField("line", IntegerType(), True),
            # The version of the checker that gave the verdict (named for pyright, the
            # only one before `checker` was added).
            StructField("pyright_version", StringType(), False),
            StructField("run_id", StringType(), False),
            # pyright | basedpyright | ty (typecheck.checker). Null in rows written before
            # the column was added: those are pyright's.
            StructField("checker", StringType(), True),
        ]
    ),
    key=("function_id",),
    description=(
        "Type-checker verdict (pyright unless `checker` says otherwise) for every "
        "decontaminated function, checked as its own file with the imports it uses; a failure "
        "carries the first error's rule, message and line, in the checker's own rule names."
    ),
)

MINHASHES = TableSpec(
    name="minhashes",
    schema=StructType(
        [
            StructField("function_id", StringType(), False),
            StructField("signature", BinaryType(), False),  # num_perm little-endian uint32
            StructField("num_perm", IntegerType(), False),
            StructField("run_id", StringType(), False),
            # Sorted distinct uint32 shingle hashes, little-endian: what candidate pairs
            # are confirmed on (exact Jaccard). Null in rows of releases before it was
            # kept, or under dedup.verify=estimate: those pairs use the signatures.
            StructField("shingles", BinaryType(), True),
        ]
    ),
    key=("function_id",),
    description=(
        "MinHash signature and shingle hashes of every function that reached dedup, kept so "
        "a new snapshot is compared against existing seeds without re-hashing them."
    ),
)

CLUSTERS = TableSpec(
    name="clusters",
    schema=StructType(
        [
            StructField("function_id", StringType(), False),
            StructField("cluster_id", StringType(), False),
            StructField("cluster_size", LongType(), False),
            StructField("is_representative", BooleanType(), False),
            StructField("run_id", StringType(), False),
        ]
    ),
    key=("function_id",),
    description=(
        "Near-duplicate clusters (MinHash-LSH at the configured Jaccard threshold, edges "
        "confirmed on signature similarity, connected components). cluster_id is the "
        "representative's function_id: most stars, then smallest id."
    ),
)
