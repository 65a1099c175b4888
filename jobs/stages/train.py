"""train: fine-tune the base model on the `sft` table (`selfalign train`, and the DAG's
optional last step when train.in_dag is true).

The driver reads `sft` (its Delta version is recorded), splits it by export's rule (a
hash of the instruction id, export.validation_fraction), renders each pair's prompt with
conf/prompts/sft_template.yaml and stages the pairs as JSONL under
`<output_dir>/_data`; then TorchDistributor starts one training process per GPU (or
one on CPU, `local_mode` on a single machine), each running udfs.training.run; rank 0's
figures become a `train_runs` row and, with train.mlflow_experiment, an MLflow run.

A rerun after a kill resumes from the newest checkpoint in `<output_dir>/checkpoints`.
A run whose sft version, template, base model and settings equal the last finished
run's trains nothing again (the checkpoint is already there).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from jobs.core.config import PipelineConfig
from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.stage import StageSummary, Step
from schemas import SFT, TRAIN_RUNS
from schemas.outcome import Source
from udfs.prompts import PromptConfigError, SftTemplate, load_sft_template
from udfs.splits import split_of
from udfs.training.chat import chat_template
from udfs.training.run import TrainSettings

log = logging.getLogger("selfalign")

NAME = Source.TRAIN
DATA = "_data"
EXTRA = "pip install 'selfalign[train]' (torch, transformers, accelerate)"


def require_packages() -> None:
    """One line naming the extra when torch or transformers is missing."""
    missing = [name for name in ("torch", "transformers", "accelerate")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise StageError(f"{NAME}: {', '.join(missing)} not installed: {EXTRA}")


def template_for(cfg: PipelineConfig) -> SftTemplate:
    try:
        return load_sft_template(cfg.generation.prompts_dir)
    except PromptConfigError as exc:
        raise StageError(f"{NAME}: {exc}") from None


def settings_for(cfg: PipelineConfig, data: Path) -> TrainSettings:
    t = cfg.train
    validation = data / "validation.jsonl"
    return TrainSettings(
        base_model=t.base_model, output_dir=t.output_dir, train_file=str(data / "train.jsonl"),
        validation_file=str(validation) if cfg.export.validation_fraction > 0 else None,
        learning_rate=t.learning_rate, epochs=t.epochs, effective_batch_size=t.effective_batch_size,
        per_device_batch_size=t.per_device_batch_size, processes=t.num_processes,
        warmup_ratio=t.warmup_ratio, scheduler=t.scheduler, optimizer=t.optimizer,
        max_length=t.max_length, max_grad_norm=t.max_grad_norm, dropout=t.dropout, bf16=t.bf16,
        save_steps=t.save_steps, seed=t.seed, max_steps=t.max_steps, logging_steps=t.logging_steps,
        dtype=t.dtype, attn_implementation=t.attn_implementation, sharding=t.sharding,
        gradient_checkpointing=t.gradient_checkpointing, gpu_memory_gb=t.gpu_memory_gb,
        chat_template=chat_template(template_for(cfg)),
    )


def stage_pairs(ctx: Context, template: SftTemplate, data: Path) -> tuple[int | None, dict[str, int]]:
    """Write train.jsonl and validation.jsonl ({prompt, response}) from `sft`, sorted by
    instruction id; returns the sft version read and the pairs per split."""
    lake = ctx.lake
    lake.ensure(SFT)
    newest = lake.history(SFT, limit=1).select("version").first()
    version = int(newest["version"]) if newest else None
    table = lake.read(SFT) if version is None else lake.read_version(SFT, version)
    rows = table.select("instruction_id", "instruction", "response").orderBy(F.col("instruction_id"))
    data.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "validation": 0}
    paths = {split: data / f"{split}.jsonl" for split in counts}
    handles = {split: (path.with_suffix(".tmp")).open("w", encoding="utf-8") for split, path in paths.items()}
    try:
        for row in rows.toLocalIterator(prefetchPartitions=True):
            split = split_of(row["instruction_id"], ctx.cfg.export.validation_fraction)
            pair = {"prompt": template.prompt(row["instruction"]), "response": row["response"]}
            handles[split].write(json.dumps(pair, ensure_ascii=False) + "\n")
            counts[split] += 1
    finally:
        for handle in handles.values():
            handle.close()
    for path in paths.values():
        path.with_suffix(".tmp").replace(path)
    return version, counts


def launch(settings: TrainSettings, ctx: Context) -> tuple[dict[str, Any], int]:
    """Run the training processes through TorchDistributor; rank 0's figures, and the GPUs
    the processes held (one each, or none)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from udfs.training.run import train_process

    t = ctx.cfg.train
    master = ctx.spark.conf.get("spark.master") or ""
    local = t.local_mode if t.local_mode is not None else master.startswith("local")
    if t.use_gpu == "auto":
        import torch

        use_gpu = bool(torch.cuda.is_available()) if local else True
    else:
        use_gpu = t.use_gpu == "true"
    distributor = TorchDistributor(num_processes=t.num_processes, local_mode=local, use_gpu=use_gpu)
    figures = distributor.run(train_process, settings)
    if not isinstance(figures, dict):
        raise StageError(f"{NAME}: the training processes returned no result; see their log above")
    if "refused" in figures:
        raise StageError(f"{NAME}: {figures['refused']}")
    return figures, t.num_processes if use_gpu else 0


def check_memory_plan(cfg: PipelineConfig, settings: TrainSettings) -> None:
    """The memory plan from base_model's config.json alone, logged before any data moves;
    a StageError when it cannot fit (train.gpu_memory_gb, else a GPU this driver sees).
    Every training process checks its own GPU again before loading."""
    from transformers import AutoConfig

    from udfs.training.run import TrainRefused, check_memory, memory_setup, resolved_dtype

    t = cfg.train
    try:
        config = AutoConfig.from_pretrained(t.base_model).to_dict()
    except (OSError, ValueError) as exc:
        log.info("[%s] no memory plan: %s", NAME, str(exc).splitlines()[0])
        return
    # A CPU driver of GPU executors plans for their bf16, not for its own CPU.
    dtype = "bfloat16" if t.dtype == "auto" and t.use_gpu == "true" else resolved_dtype(t.dtype)
    mixed = t.bf16 == "true" or (t.bf16 == "auto" and dtype == "bfloat16")
    attention = "eager" if t.attn_implementation == "eager" else "sdpa"
    try:
        check_memory(settings, config, memory_setup(settings, dtype, attention, mixed))
    except TrainRefused as refused:
        raise StageError(f"{NAME}: {refused}") from None


def _same_as_last(ctx: Context, identity: dict[str, Any]) -> bool:
    last = (ctx.lake.read(TRAIN_RUNS).where(F.col("output_dir") == F.lit(identity["output_dir"]))
            .orderBy(F.col("run_id").desc())
            .select("base_model", "sft_version", "template_version", "hyperparameters", "output_dir")
            .first())
    if last is None:
        return False
    return last.asDict() == identity and (Path(identity["output_dir"]) / "config.json").is_file()


def _track(cfg: PipelineConfig, params: dict[str, Any], figures: dict[str, Any], run_id: str) -> None:
    if not cfg.train.mlflow_experiment:
        return
    try:
        import mlflow
    except ImportError:
        raise StageError(f"{NAME}: train.mlflow_experiment is set but mlflow is not installed: "
                         f"{EXTRA}") from None
    if cfg.train.mlflow_tracking_uri:
        mlflow.set_tracking_uri(cfg.train.mlflow_tracking_uri)
    mlflow.set_experiment(cfg.train.mlflow_experiment)
    with mlflow.start_run(run_name=f"selfalign-train-{run_id}"):
        mlflow.log_params({key: str(value) for key, value in params.items()})
        mlflow.log_metrics({key: float(value) for key, value in figures.items()
                            if isinstance(value, int | float) and not isinstance(value, bool)})


def train(ctx: Context, summary: StageSummary) -> None:
    require_packages()
    cfg = ctx.cfg
    template = template_for(cfg)
    data = Path(cfg.train.output_dir) / DATA
    started = time.monotonic()
    settings = settings_for(cfg, data)
    check_memory_plan(cfg, settings)
    version, counts = stage_pairs(ctx, template, data)
    summary.rows_in = counts["train"] + counts["validation"]
    if not counts["train"]:
        raise StageError(f"{NAME}: the sft table has no training pairs yet; run the DAG to select first")
    hyper = {key: value for key, value in asdict(settings).items()
             if key not in ("output_dir", "train_file", "validation_file", "base_model")}
    hyper["gradient_accumulation"] = settings.gradient_accumulation
    identity = {"base_model": settings.base_model, "sft_version": version,
                "template_version": template.version,
                "hyperparameters": json.dumps(hyper, sort_keys=True), "output_dir": settings.output_dir}
    ctx.lake.ensure(TRAIN_RUNS)
    if _same_as_last(ctx, identity):
        log.info("[%s] sft version %s already trained into %s with these settings: nothing to do",
                 NAME, version, settings.output_dir)
        return
    log.info("[%s] %d train / %d validation pairs (sft version %s) -> %s; %d process(es), "
             "gradient accumulation %d", NAME, counts["train"], counts["validation"], version,
             settings.output_dir, settings.processes, settings.gradient_accumulation)
    launched = time.monotonic()
    figures, gpus = launch(settings, ctx)
    summary.usage.gpu_seconds = (time.monotonic() - launched) * gpus  # priced by cost.gpu_hour
    row = {"run_id": ctx.run_id, **identity, "train_pairs": figures["train_pairs"],
           "validation_pairs": figures["validation_pairs"], "skipped_pairs": figures["skipped_pairs"],
           "steps": figures["steps"], "train_loss": figures["train_loss"],
           "validation_loss": figures["validation_loss"], "tokens_per_second": figures["tokens_per_second"],
           "resumed_from": figures["resumed_from"], "wall_seconds": time.monotonic() - started}
    ctx.lake.append(TRAIN_RUNS, ctx.spark.createDataFrame([row], TRAIN_RUNS.schema))
    _track(cfg, {**hyper, "base_model": settings.base_model, "sft_version": version}, figures, ctx.run_id)
    summary.rows_out = figures["train_pairs"]
    log.info("[%s] %d steps, train loss %.4f, validation loss %s -> %s", NAME, figures["steps"],
             figures["train_loss"], "n/a" if figures["validation_loss"] is None
             else f"{figures['validation_loss']:.4f}", settings.output_dir)


STEP = Step(name=NAME, action=train)
