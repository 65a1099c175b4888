"""A generation job that reports which GPUs each task was given and used, for
tests/e2e/test_cluster_gpus.py: `spark-submit tests/gpu_probe.py OUT.json` on a standalone
cluster whose worker announces fake GPUs.

It runs the real generation path (jobs.stages.generation: the GPU request and profile,
mapInPandas, pinning, the per-worker engine cache) with `DeviceProbeEngine`, which holds
its "model" on the GPUs visible when it was built, as vLLM does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from udfs.llm import Completion, EngineSettings, Generation, SamplingParams
from udfs.llm.gpus import CUDA_VISIBLE_DEVICES, task_gpu_addresses

ENGINE = "python:tests.gpu_probe:DeviceProbeEngine"
TASKS = 4  # two waves on an executor with two GPUs: the second reuses Python workers
ROWS_PER_TASK = 3
TASK_S = 2.0  # long enough that the tasks of a wave overlap
OBSERVATION = ("item_id string, task int, pid int, assigned string, visible string, "
               "engine_devices string, started double, ended double")


class DeviceProbeEngine:
    """Engine test double bound to GPUs: one per process (ONE_PER_PROCESS), built on the
    devices visible at construction, like udfs.llm.vllm.VLLMEngine."""

    ONE_PER_PROCESS = True
    CACHE_FIELDS = ("model", "tensor_parallel_size")

    def __init__(self, cfg: EngineSettings) -> None:
        self.cfg = cfg
        self.devices = os.environ.get(CUDA_VISIBLE_DEVICES)

    def check(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"engine": "device-probe"}

    def generate(self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
                 ) -> list[Generation]:
        return [Generation(completions=(Completion(self.devices or "", "stop"),)) for _ in prompts]


def observe(records: list[dict[str, Any]], engine: Any) -> list[dict[str, Any]]:
    """The generation handler: what this task was assigned, saw and ran on."""
    from pyspark import TaskContext

    started = time.time()
    ran_on = engine.generate(["which devices?"], SamplingParams())[0].texts[0]
    time.sleep(TASK_S)
    context = TaskContext.get()
    common = {"task": context.partitionId() if context else -1, "pid": os.getpid(),
              "assigned": ",".join(task_gpu_addresses()),
              "visible": os.environ.get(CUDA_VISIBLE_DEVICES), "engine_devices": ran_on,
              "started": started, "ended": time.time()}
    return [{"item_id": record["item_id"], **common} for record in records]


def main(out: str) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

    from jobs.core.failures import StageError
    from jobs.stages.generation import GenerationSettings, generate, gpu_request

    spark = SparkSession.builder.getOrCreate()
    conf = lambda key: spark.conf.get(key, None)  # noqa: E731
    rows = spark.range(TASKS * ROWS_PER_TASK).selectExpr("cast(id as string) as item_id")
    schema = StructType.fromDDL(OBSERVATION)
    assert isinstance(schema, StructType)
    report: dict[str, Any] = {}
    for tp in (1, 2):
        settings = GenerationSettings(
            engine=EngineSettings(engine=ENGINE, tensor_parallel_size=tp), group_size=1000,
            tasks=TASKS, gpu_profile=gpu_request(tp, conf))
        frame = generate(rows, "item_id", schema, settings, observe)
        report[f"tp{tp}"] = [row.asDict() for row in frame.collect()]
    try:
        gpu_request(3, conf)  # more GPUs per task than any executor has
    except StageError as exc:
        report["refused"] = str(exc)
    with open(out, "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main(sys.argv[1])
