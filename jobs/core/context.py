"""What every stage receives: the session, the config, the lake and the run id."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

from jobs.core.config import ConfigError, PipelineConfig
from jobs.core.lake import Lake
from jobs.core.session import get_spark

RUN_ID_ENV = "SELFALIGN_RUN_ID"
# Job run ids of Databricks (digits) and EMR (a step list's own name), and ours.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def chosen_run_id(given: str | None = None) -> str:
    """The run id of this command: `given` (--run-id), else $SELFALIGN_RUN_ID, else a new
    one. Every task of a nightly job passes the job's id, so the night is one run in
    `runs`, `status` and `report`, and a retried task counts as the same run."""
    run_id = given or os.environ.get(RUN_ID_ENV) or None
    if run_id is None:
        return new_run_id()
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"run id {run_id!r}: use 1 to 128 letters, digits, '.', '_', ':' or '-', "
                          "starting with a letter or digit")
    return run_id


@dataclass
class Context:
    spark: SparkSession
    cfg: PipelineConfig
    lake: Lake
    run_id: str
    # What one stage run computes once and uses twice (extract's list of new input
    # files): emptied by the runner when a stage run starts.
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, cfg: PipelineConfig, run_id: str | None = None) -> Context:
        run_id = chosen_run_id(run_id)  # a bad id stops before Spark starts
        spark = get_spark(cfg.spark, cfg.lake)
        ctx = cls(spark=spark, cfg=cfg, lake=Lake.from_config(spark, cfg.lake), run_id=run_id)
        ctx.lake.tag_commits(ctx.run_id)
        return ctx
