"""The table of `selfalign train`: one row per training run."""

from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from schemas.spec import TableSpec

TRAIN_RUNS = TableSpec(
    name="train_runs",
    schema=StructType(
        [
            StructField("run_id", StringType(), False),
            StructField("base_model", StringType(), False),
            StructField("sft_version", LongType(), True),  # the Delta version of `sft` read
            StructField("template_version", StringType(), False),  # conf/prompts/sft_template.yaml
            StructField("hyperparameters", StringType(), False),  # JSON of the training settings
            StructField("train_pairs", IntegerType(), False),
            StructField("validation_pairs", IntegerType(), False),
            StructField("skipped_pairs", IntegerType(), False),  # prompt alone over max_length
            StructField("steps", IntegerType(), False),
            StructField("train_loss", DoubleType(), False),  # mean over the run's steps
            StructField("validation_loss", DoubleType(), True),
            StructField("tokens_per_second", DoubleType(), True),
            StructField("resumed_from", StringType(), True),  # the checkpoint a rerun went on from
            StructField("output_dir", StringType(), False),
            StructField("wall_seconds", DoubleType(), False),
        ]
    ),
    key=("run_id",),
    description=(
        "One row per `selfalign train` run: base model, the sft table version and template "
        "it trained on, hyper-parameters, losses and where the checkpoint was written."
    ),
)
