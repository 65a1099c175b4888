"""Shared plumbing of the LLM stages (judge, concepts, instruct, respond): each is a row
handler plus a declaration made by `llm_stage`.

A stage supplies `rows(records, engine, settings) -> outcome rows`: pure Python that
builds prompts, calls the engine once for the whole group and parses the answers. This
module runs it inside `mapInPandas` with one engine per Python worker, groups rows into
large engine calls (continuous batching), places tasks on GPUs, and fails the stage on
the driver when no engine is configured.

GPUs on classic Spark clusters (`generation.gpu_resource_profile`): each task asks for
`llm.tensor_parallel_size` GPUs through a ResourceProfile, and pins the ones Spark gave
it (udfs/llm/gpus.py) before its engine loads, so concurrent tasks never share a card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.resource import (
    ExecutorResourceRequests,
    ResourceProfile,
    ResourceProfileBuilder,
    TaskResourceRequests,
)
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from jobs.core.config import PipelineConfig
from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.sections import SamplingConfig
from jobs.core.session import launched_by_cluster, remote_url
from jobs.core.stage import Chunking, Stage, StageRun
from schemas import TableSpec
from schemas.outcome import (
    ITEM_ID,
    SOURCE_KEY,
    Reason,
    outcome_frame,
    outcome_schema,
    reject,
    retry,
)
from udfs.llm import (
    CUT_AT_MAX_TOKENS,
    Engine,
    EngineError,
    EngineSettings,
    Generation,
    SamplingParams,
    get_engine,
    make_engine,
)
from udfs.llm.gpus import pin_task_gpus
from udfs.llm.metered import MeteredEngine, held_gpus
from udfs.progress import ProgressSender, ProgressTarget
from udfs.prompts import (
    PromptConfigError,
    PromptSet,
    load_prompts,
    pick_category_difficulty,
    prompt_version,
    stop_sequences,
)

log = logging.getLogger("selfalign")

Handler = Callable[[list[dict[str, Any]], Engine], list[dict[str, Any]]]


def sampling(cfg: SamplingConfig, kind: str, seed: int | None = None) -> SamplingParams:
    return SamplingParams(
        n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
        stop=tuple(stop_sequences(kind)), seed=seed,
    )


def row_seed(key: str, base: int) -> int:
    """A per-row sampling seed: reruns reproduce the same samples on engines that honour it.
    Keys are hex digests; any other key is hashed first."""
    if not key:
        return base
    head = key[:12] if re.fullmatch(r"[0-9a-fA-F]{12}", key[:12]) else hashlib.sha256(key.encode()).hexdigest()[:12]
    return (int(head, 16) + base) % (2**31 - 1)


def lineage(engine: Engine, prompt_version: str, params: SamplingParams) -> dict[str, str]:
    described = engine.describe()
    return {
        "model": str(described.get("model") or described.get("engine") or "unknown"),
        "prompt_version": prompt_version,
        "sampling": json.dumps(params.as_dict(), sort_keys=True),
    }


def failure(generation: Generation) -> dict[str, Any]:
    """Outcome columns for a generation that produced nothing."""
    if generation.transient:
        return retry(generation.error or "transient failure")
    return reject(Reason.GENERATION_ERROR, (generation.error or "")[:1000])


def truncated(max_tokens: int, text: str) -> dict[str, Any]:
    """Only complete generations count: the reject of one cut by max_tokens."""
    return reject(Reason.TRUNCATED, f"cut at max_tokens={max_tokens}: ...{text[-150:]}")


def require_engine(cfg: PipelineConfig, stage: str) -> None:
    """Fail the stage at its start, with the message saying how to configure an engine.

    An engine that runs inside executor tasks (vLLM) is checked here only in the local
    session, whose driver is also its executor; on a cluster the tasks check it where
    it runs, and a missing GPU or package fails the first task with the same message.
    """
    engine = make_engine(EngineSettings.from_settings(cfg.llm))
    if getattr(engine, "RUNS_IN_TASKS", False) and (launched_by_cluster() or remote_url(cfg.spark)):
        log.info("[%s] %s is checked on the executors, where the model loads", stage, cfg.llm.engine)
        return
    try:
        engine.check()
    except EngineError as exc:
        raise StageError(f"{stage}: {exc}") from None


def load_stage_prompts(cfg: PipelineConfig) -> PromptSet:
    """The prompts, checked against the config at the stage's start: a category the
    prompts do not know is an error here, not in an executor."""
    prompts = load_prompts(cfg.generation.prompts_dir)
    try:
        pick_category_difficulty("", prompts, cfg.generation.categories)
    except PromptConfigError as exc:
        raise StageError(str(exc)) from None
    return prompts


@dataclass(frozen=True)
class GpuRequest:
    """What each generation task asks of a classic Spark cluster."""

    gpus: int  # llm.tensor_parallel_size: vLLM shards the model over this many
    # Also ask executors for as many GPUs, so dynamic allocation starts executors sized
    # for the GPU stage. Without dynamic allocation Spark accepts only task requests
    # (a TaskResourceProfile) and runs them on the executors it has.
    executor_requests: bool
    discovery_script: str = ""  # the cluster's spark.executor.resource.gpu.* for those
    vendor: str = ""


@dataclass(frozen=True)
class GenerationSettings:
    """What an LLM stage's tasks need: plain values pickled into them."""

    engine: EngineSettings
    group_size: int  # rows per engine call (generation.batch_rows)
    tasks: int  # tasks the rows are spread over
    gpu_profile: GpuRequest | None  # classic Spark clusters: GPUs each task asks for
    sampling: SamplingConfig | None = None  # the stage's generation.<stage> section
    prompts: PromptSet | None = None
    seed: int = 0  # run.seed: per-row sampling seeds derive from it
    categories: dict[str, float] | None = None  # generation.categories (instruct)
    progress: ProgressTarget | None = None  # where tasks send live progress

    def inputs(self) -> tuple[PromptSet, SamplingConfig]:
        """The prompts and sampling section a row handler needs (llm_stage sets both)."""
        assert self.prompts is not None and self.sampling is not None
        return self.prompts, self.sampling


def generation_settings(run: StageRun[Any], sampling: SamplingConfig | None = None,
                        prompts: PromptSet | None = None) -> GenerationSettings:
    """Settings of an LLM stage; fails here, at its start, when no engine is configured."""
    ctx = run.ctx
    require_engine(ctx.cfg, run.stage)
    return GenerationSettings(
        engine=EngineSettings.from_settings(ctx.cfg.llm), group_size=ctx.cfg.generation.batch_rows,
        tasks=_engine_tasks(ctx.cfg, run.tasks), gpu_profile=_gpu_request(ctx),
        sampling=sampling, prompts=prompts, seed=ctx.cfg.run.seed,
        categories=dict(ctx.cfg.generation.categories), progress=run.progress,
    )


def _regroup(batches: Iterator[pd.DataFrame], size: int) -> Iterator[list[dict[str, Any]]]:
    """Arrow batches are small; the engine wants large groups of prompts."""
    group: list[dict[str, Any]] = []
    for batch in batches:
        group.extend(batch.to_dict("records"))
        while len(group) >= size:
            yield group[:size]
            group = group[size:]
    if group:
        yield group


def _engine_tasks(cfg: PipelineConfig, cluster_tasks: int) -> int:
    """Tasks a generation is spread over: one engine each."""
    if cfg.llm.engine == "vllm" and not cfg.generation.gpu_resource_profile:
        return cfg.generation.local_gpus  # one engine per GPU: never two workers loading one card
    return cluster_tasks


def gpu_request(tensor_parallel_size: int, conf: Callable[[str], str | None]) -> GpuRequest:
    """The request for a cluster whose Spark settings `conf(key)` reads; refuses, at the
    stage's start, a request no executor can ever satisfy (its tasks would wait forever)."""
    dynamic = (conf("spark.dynamicAllocation.enabled") or "false").strip().lower() == "true"
    if not dynamic:
        per_executor = float(conf("spark.executor.resource.gpu.amount") or 0)
        if per_executor < tensor_parallel_size:
            raise StageError(
                f"generation.gpu_resource_profile: each task needs llm.tensor_parallel_size="
                f"{tensor_parallel_size} GPUs, but executors have spark.executor.resource.gpu.amount="
                f"{per_executor:g} and dynamic allocation is off: give executors at least "
                f"{tensor_parallel_size} GPUs, or lower llm.tensor_parallel_size"
            )
    return GpuRequest(gpus=tensor_parallel_size, executor_requests=dynamic,
                      discovery_script=conf("spark.executor.resource.gpu.discoveryScript") or "",
                      vendor=conf("spark.executor.resource.gpu.vendor") or "")


def _gpu_request(ctx: Context) -> GpuRequest | None:
    if not ctx.cfg.generation.gpu_resource_profile:
        return None
    return gpu_request(ctx.cfg.llm.tensor_parallel_size, lambda key: ctx.spark.conf.get(key, None))


def gpu_profile(request: GpuRequest) -> ResourceProfile:
    builder = ResourceProfileBuilder().require(TaskResourceRequests().cpus(1).resource("gpu", request.gpus))
    if request.executor_requests:
        builder.require(ExecutorResourceRequests().resource(
            "gpu", request.gpus, request.discovery_script, request.vendor))
    return builder.build


def generate(rows: DataFrame, key: str, schema: StructType, settings: GenerationSettings,
             handle: Handler) -> DataFrame:
    """Run `handle` over `rows` on executors, one cached engine per Python worker."""
    llm, group_size, target = settings.engine, settings.group_size, settings.progress

    def run_groups(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        held_since = time.monotonic()  # the task holds its GPUs from here (the model's load)
        pin_task_gpus()  # before the engine loads: only the GPUs Spark gave this task
        engine = MeteredEngine(get_engine(llm))
        progress = ProgressSender(target)
        for records in _regroup(batches, group_size):
            outcomes = handle(records, engine)
            usage, now = engine.take(), time.monotonic()
            usage.gpu_seconds = (now - held_since) * held_gpus(engine.engine)
            held_since = now
            # The group's usage rides on its first row; the runner sums the column.
            if outcomes:
                outcomes[0].update(usage.columns())
            progress.add(len(records), usage.tokens_out)
            yield outcome_frame(outcomes, schema)
        progress.close()

    spread = rows.repartition(settings.tasks, key)
    if settings.gpu_profile is not None:
        return spread.mapInPandas(run_groups, schema=schema, profile=gpu_profile(settings.gpu_profile))
    return spread.mapInPandas(run_groups, schema=schema)


Answer = Callable[[dict[str, Any], list[str]], None]


def one_answer_each(records: list[dict[str, Any]], engine: Engine, settings: GenerationSettings,
                    kind: str, key: str, texts: list[str], answer: Answer,
                    extra: list[dict[str, Any]] | None = None,
                    complete_only: bool = True) -> list[dict[str, Any]]:
    """Outcome rows of a stage that makes one row per record (judge, concepts, instruct):
    `answer(row, samples)` fills the row from the model's texts (generation.<kind>.n of
    them), or rejects it. complete_only: a sample cut by max_tokens rejects the row."""
    prompts, cfg = settings.inputs()
    # Sampled (temperature > 0) yet reproducible: each row has a seed of its own.
    params = [sampling(cfg, kind, row_seed(record[key], settings.seed)) for record in records]
    version = prompt_version(kind, prompts)
    rows = []
    generations = engine.generate(texts, params)
    for index, (record, generation) in enumerate(zip(records, generations, strict=True)):
        item = record[key]
        row: dict[str, Any] = {key: item, SOURCE_KEY: item, ITEM_ID: item,
                               **(extra[index] if extra else {}),
                               **lineage(engine, version, params[index])}
        if not generation.ok:
            rows.append({**row, **failure(generation)})
            continue
        cut = [c for c in generation.completions if c.finish_reason == CUT_AT_MAX_TOKENS]
        if complete_only and cut:
            rows.append({**row, **truncated(cfg.max_tokens, cut[0].text)})
            continue
        answer(row, [completion.text for completion in generation.completions])
        rows.append(row)
    return rows


RowHandler = Callable[[list[dict[str, Any]], Engine, GenerationSettings], list[dict[str, Any]]]


def llm_stage(name: str, output: TableSpec, key: str, read: Callable[[Context], DataFrame],
              rows: RowHandler, verdicts: bool = False) -> Stage[GenerationSettings]:
    """The declaration of an LLM stage: its sampling is generation.<name>, its prompts
    generation.prompts_dir, its chunks generation.chunk_rows."""
    schema = outcome_schema(output, usage=True)

    def settings(run: StageRun[GenerationSettings]) -> GenerationSettings:
        return generation_settings(run, getattr(run.cfg.generation, name), load_stage_prompts(run.cfg))

    def transform(part: DataFrame, settings: GenerationSettings) -> DataFrame:
        return generate(part, key, schema, settings, lambda records, engine: rows(records, engine, settings))

    return Stage(name=name, output=output, key=key, read=read, settings=settings,
                 transform=transform, chunking=Chunking(rows=lambda cfg: cfg.generation.chunk_rows),
                 verdicts=verdicts, needs_engine=True, progress_unit="tokens")
