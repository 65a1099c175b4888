"""What every stage receives: the session, the config, the lake and the run id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from jobs.core.config import PipelineConfig
from jobs.core.lake import Lake
from jobs.core.session import get_spark


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


@dataclass
class Context:
    spark: SparkSession
    cfg: PipelineConfig
    lake: Lake
    run_id: str

    @classmethod
    def create(cls, cfg: PipelineConfig, run_id: str | None = None) -> Context:
        spark = get_spark(cfg.spark, cfg.lake)
        ctx = cls(spark=spark, cfg=cfg, lake=Lake.from_config(spark, cfg.lake), run_id=run_id or new_run_id())
        ctx.lake.tag_commits(ctx.run_id)
        return ctx
