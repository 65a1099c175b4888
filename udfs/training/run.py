"""The training process: Hugging Face Trainer on the SFT pairs, the published recipe.

`train_process(settings)` is what TorchDistributor starts in every process (one per GPU,
or one on CPU); under torchrun the Trainer joins the process group itself. Before any
weight is read it checks the memory plan (udfs/training/memory.py) against its GPU and
refuses with one line when the model cannot fit. It loads the model in `dtype` with the
chosen attention, wraps it in FSDP when `sharding` says so (full shard, one unit per
decoder layer, sharded checkpoints), reads the pairs the driver staged as JSONL, resumes
from the newest checkpoint in `<output_dir>/checkpoints` when there is one (a killed run
ends with the same weights as an uninterrupted one), and writes the model (safetensors)
and the tokenizer, with the SFT layout as its chat template, to `output_dir`. It returns
the figures for the `train_runs` row.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from udfs.training.data import Encoded, encode_pair, pad_batch
from udfs.training.memory import GIB, ModelShape, Setup, plan, refusal

log = logging.getLogger("selfalign")

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training process needs, as plain values (pickled to each process)."""

    base_model: str  # a Hugging Face id or a local directory
    output_dir: str
    train_file: str  # JSONL of {"prompt", "response"}: the template already applied
    validation_file: str | None
    learning_rate: float = 1e-5
    epochs: float = 4.0
    effective_batch_size: int = 64
    per_device_batch_size: int = 1
    processes: int = 1
    warmup_ratio: float = 0.05
    scheduler: str = "linear"
    optimizer: str = "adafactor"
    max_length: int = 1280
    max_grad_norm: float = 0.0  # 0: no clipping, as published
    dropout: float = 0.0
    bf16: str = "auto"  # auto: where the GPU supports it
    save_steps: int = 500
    seed: int = 42
    max_steps: int = -1  # > 0: stop there (smoke runs)
    logging_steps: int = 10
    dtype: str = "auto"  # the weights as loaded: auto, bfloat16, float16, float32
    attn_implementation: str = "auto"
    sharding: str = "none"  # none | fsdp
    gradient_checkpointing: bool = False
    gpu_memory_gb: float | None = None  # None: the GPU's own figure
    chat_template: str | None = None  # saved with the tokenizer

    @property
    def gradient_accumulation(self) -> int:
        """Steps per optimizer update so per-device batch x steps x processes = effective."""
        return max(1, math.ceil(self.effective_batch_size / (self.per_device_batch_size * self.processes)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# What a checkpoint holds once the Trainer has finished writing it (trainer_state.json is
# written last): a kill during a save leaves a directory without some of these. Under
# FSDP's sharded state dicts the weights and the optimizer are directories of shards
# (pytorch_model_fsdp_0/, optimizer_0/) with a .metadata file written when all are in.
CHECKPOINT_FILES = ("trainer_state.json", "scheduler.pt")


def _weights_written(path: Path) -> bool:
    return ((path / "model.safetensors").is_file() or any(path.glob("model-*.safetensors"))
            or (path / "pytorch_model_fsdp_0" / ".metadata").is_file())


def _optimizer_written(path: Path) -> bool:
    return (path / "optimizer.pt").is_file() or (path / "optimizer_0" / ".metadata").is_file()


def last_complete_checkpoint(directory: Path) -> str | None:
    """The newest checkpoint-N in `directory` that was written whole, or None."""
    found = []
    for path in directory.glob("checkpoint-*") if directory.is_dir() else ():
        step = path.name.removeprefix("checkpoint-")
        if (step.isdigit() and _weights_written(path) and _optimizer_written(path)
                and all((path / name).is_file() for name in CHECKPOINT_FILES)):
            found.append((int(step), str(path)))
    return max(found)[1] if found else None


def read_pairs(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def encode_file(tokenizer: Any, path: str, max_length: int) -> tuple[list[Encoded], int]:
    """Encoded pairs of a staged file, and how many were left out (prompt >= max_length)."""
    encoded = [encode_pair(tokenizer, p["prompt"], p["response"], max_length) for p in read_pairs(path)]
    kept = [e for e in encoded if e is not None]
    return kept, len(encoded) - len(kept)


def _without_dropout(config: Any, dropout: float) -> dict[str, float]:
    """Every dropout probability of a model config, set to `dropout` (published: 0)."""
    return {key: dropout for key, value in config.to_dict().items()
            if isinstance(value, float) and ("dropout" in key or key.endswith("pdrop"))}


def _bf16(setting: str) -> bool:
    import torch

    if setting == "auto":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return setting == "true"


class _Pairs:
    """A map-style dataset over encoded pairs (what Trainer's sampler indexes)."""

    def __init__(self, rows: list[Encoded]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"input_ids": row.input_ids, "labels": row.labels}


def _collator(pad_id: int) -> Any:
    import torch

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        return {key: torch.tensor(value) for key, value in pad_batch(examples, pad_id).items()}

    return collate


def _progress_callback() -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One line per logging step on the first process: step, loss, rate and ETA."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.monotonic()
            self.first_step = state.global_step

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            done = state.global_step - self.first_step
            elapsed = time.monotonic() - self.start
            left = (state.max_steps - state.global_step) * elapsed / done if done else 0.0
            log.info("[train] step %d/%d loss %.4f lr %.2e %.2f s/step eta %s",
                     state.global_step, state.max_steps, logs["loss"], logs.get("learning_rate", 0.0),
                     elapsed / max(done, 1), time.strftime("%H:%M:%S", time.gmtime(left)))

    return Progress()


def _log_to_stderr() -> None:
    """Under torchrun the process is new: give the pipeline's logger a handler there."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def training_arguments(settings: TrainSettings, layer_classes: list[str] | None = None) -> Any:
    """The Trainer's arguments: the published recipe, plus sharding and checkpointing.
    Built before the model loads (FSDP's settings reach from_pretrained through them)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(Path(settings.output_dir) / CHECKPOINTS),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        warmup_ratio=settings.warmup_ratio,
        lr_scheduler_type=settings.scheduler,
        optim=settings.optimizer,
        max_grad_norm=settings.max_grad_norm,
        bf16=_bf16(settings.bf16),
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=settings.logging_steps,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=[],
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not _cuda(),
        **_memory_arguments(settings, layer_classes or []),
    )


def _memory_arguments(settings: TrainSettings, layer_classes: list[str]) -> dict[str, Any]:
    """FSDP (full shard, a unit per decoder layer) or none; activation checkpointing."""
    if settings.sharding != "fsdp":
        if not settings.gradient_checkpointing:
            return {}
        return {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    return {
        "fsdp": "full_shard auto_wrap",
        "fsdp_config": {
            "transformer_layer_cls_to_wrap": layer_classes,
            # The optimizer steps the model's own parameters (views into the shards), so
            # Adafactor and AdamW see the names and shapes they expect.
            "use_orig_params": True,
            # Every process reads the same checkpoint, so there is nothing to broadcast (and
            # accelerate's broadcast needs a GPU). The cost: each process holds the whole
            # model in host memory while it loads (8 x 32 GB for StarCoder2-15B in bf16).
            "sync_module_states": False,
            # Checkpoints as each rank's shards (no gather of the whole model per save);
            # the final model is gathered once, as safetensors, in train_process.
            "state_dict_type": "SHARDED_STATE_DICT",
            "activation_checkpointing": settings.gradient_checkpointing,
            "backward_prefetch": "backward_pre",
            "limit_all_gathers": True,
        },
    }


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@contextmanager
def exclusive(output_dir: str) -> Iterator[None]:
    """Hold `<output_dir>/.train.lock` while training (first process only): a second run
    on the same directory (say, a rerun while an orphaned trainer of a killed driver
    still writes there) stops with one line instead of both writing checkpoints. The
    kernel drops the lock when its holder dies."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / ".train.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another training run is writing {output_dir} (it holds "
                               f"{handle.name}); wait for it or stop it") from None
        yield


class TrainRefused(Exception):
    """A setting the process cannot train with: one line for the driver to print."""


def train_process(settings: TrainSettings) -> dict[str, Any]:
    """Train, save, and return the figures (on every process; the driver keeps rank 0's).
    A refusal (the memory plan, a missing package) comes back as {"refused": line}."""
    try:
        with exclusive(settings.output_dir):
            return _train(settings)
    except TrainRefused as refused:
        return {"refused": str(refused)}


def resolved_dtype(setting: str) -> str:
    """auto: bfloat16 where the GPU has it (as published), float32 on CPU."""
    if setting != "auto":
        return setting
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


def resolved_attention(setting: str, dtype: str) -> str:
    flash = importlib.util.find_spec("flash_attn") is not None
    if setting == "flash_attention_2" and not flash:
        raise TrainRefused("train.attn_implementation=flash_attention_2 but the flash-attn package is "
                           "not installed: pip install flash-attn, or set train.attn_implementation=sdpa")
    if setting == "auto":
        return "flash_attention_2" if flash and _cuda() and dtype != "float32" else "sdpa"
    return setting


def memory_setup(settings: TrainSettings, dtype: str, attention: str, mixed: bool | None = None) -> Setup:
    """The plan's view of the settings; mixed (bf16 autocast) as this machine resolves it
    unless given (a CPU driver planning for GPU executors gives it)."""
    return Setup(
        dtype=dtype, processes=int(os.environ.get("WORLD_SIZE", settings.processes)),  # type: ignore[arg-type]
        sharding=settings.sharding, per_device_batch_size=settings.per_device_batch_size,  # type: ignore[arg-type]
        max_length=settings.max_length, gradient_checkpointing=settings.gradient_checkpointing,
        optimizer=settings.optimizer, attention=attention,  # type: ignore[arg-type]
        mixed_precision=_bf16(settings.bf16) if mixed is None else mixed,
    )


def check_memory(settings: TrainSettings, config: dict[str, Any], setup: Setup) -> float | None:
    """Log the plan (once: the driver, or a job's first process) and refuse when it cannot
    fit the GPU (train.gpu_memory_gb, else this machine's); the planned GiB, or None for a
    model the plan cannot read."""
    try:
        shape = ModelShape.from_config(config)
    except ValueError as exc:
        log.info("[train] no memory plan: %s", exc)
        return None
    planned = plan(shape, setup)
    name = Path(settings.base_model).name or settings.base_model
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("[train] memory plan: %s", planned.line(name))
    gpu_bytes = gpu_memory_bytes(settings)
    if gpu_bytes is not None and (line := refusal(name, shape, setup, gpu_bytes)):
        raise TrainRefused(line)
    return planned.total_gib


def gpu_memory_bytes(settings: TrainSettings) -> int | None:
    if settings.gpu_memory_gb:
        return int(settings.gpu_memory_gb * GIB)
    if not _cuda():
        return None
    import torch

    return int(torch.cuda.get_device_properties(int(os.environ.get("LOCAL_RANK", "0"))).total_memory)


def decoder_layer_classes(config: Any) -> list[str]:
    """The model class's own unit of sharding (its `_no_split_modules`), read from the
    class without building the model."""
    from transformers import AutoModelForCausalLM

    model_class = AutoModelForCausalLM._model_mapping[type(config)]  # type: ignore[attr-defined]
    return list(getattr(model_class, "_no_split_modules", None) or [])


def _train(settings: TrainSettings) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer
    from transformers.trainer_callback import PrinterCallback

    _log_to_stderr()

    started = time.monotonic()
    config = AutoConfig.from_pretrained(settings.base_model)
    if settings.sharding == "fsdp" and not _cuda():
        # accelerate (1.11) turns FSDP on only for GPU-like devices; on CPU the Trainer
        # would quietly train unsharded replicas instead.
        raise TrainRefused("train.sharding=fsdp needs GPUs (the Trainer shards only on CUDA "
                           "devices); on CPU set train.sharding=none")
    dtype = resolved_dtype(settings.dtype)
    attention = resolved_attention(settings.attn_implementation, dtype)
    planned = check_memory(settings, config.to_dict(), memory_setup(settings, dtype, attention))

    tokenizer = AutoTokenizer.from_pretrained(settings.base_model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_rows, skipped = encode_file(tokenizer, settings.train_file, settings.max_length)
    validation_rows: list[Encoded] = []
    if settings.validation_file:
        validation_rows, _ = encode_file(tokenizer, settings.validation_file, settings.max_length)
    if not train_rows:
        raise ValueError("no training pair fits train.max_length")

    args = training_arguments(settings, decoder_layer_classes(config))
    model = AutoModelForCausalLM.from_pretrained(
        settings.base_model, dtype=getattr(torch, dtype), attn_implementation=attention,
        **_without_dropout(config, settings.dropout))
    if settings.gradient_checkpointing:
        model.config.use_cache = False  # the cache is for generation; it conflicts with recompute
    parameters = model.num_parameters()
    trainer = Trainer(
        model=model, args=args, train_dataset=_Pairs(train_rows),
        eval_dataset=_Pairs(validation_rows) if validation_rows else None,
        data_collator=_collator(pad_id), callbacks=[_progress_callback()],
    )
    trainer.remove_callback(PrinterCallback)  # our progress line says it once
    resume = last_complete_checkpoint(Path(args.output_dir))
    if resume:
        log.info("[train] resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    held = _parameters_held(trainer.model_wrapped)
    validation_loss = trainer.evaluate()["eval_loss"] if validation_rows else None
    _save(trainer, tokenizer, settings)
    tokens = sum(len(r.input_ids) for r in train_rows)
    runtime = float(result.metrics.get("train_runtime") or 0.0)
    epochs_done = float(result.metrics.get("epoch") or settings.epochs)
    return {
        "train_loss": float(result.training_loss),
        "validation_loss": None if validation_loss is None else float(validation_loss),
        "steps": int(result.global_step),
        "train_pairs": len(train_rows),
        "skipped_pairs": skipped,
        "validation_pairs": len(validation_rows),
        "tokens_per_second": tokens * epochs_done / runtime if runtime else None,
        "resumed_from": resume,
        "losses": [[entry["step"], entry["loss"]] for entry in trainer.state.log_history if "loss" in entry],
        "seconds": time.monotonic() - started,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "dtype": dtype,
        "attn_implementation": attention,
        "parameters": parameters,
        "parameters_held": held,
        "memory_plan_gib": planned,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / GIB if _cuda() else None,
    }


def _parameters_held(model: Any) -> list[int]:
    """Parameter elements each process holds (its FSDP shard, or the whole model)."""
    import torch.distributed as dist

    held = sum(p.numel() for p in model.parameters())
    if not (dist.is_available() and dist.is_initialized()):
        return [held]
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, held)
    return [int(value) for value in every]


def _save(trainer: Any, tokenizer: Any, settings: TrainSettings) -> None:
    """The model as safetensors (every process takes part: under FSDP the shards are
    gathered to the first), the tokenizer with the SFT layout as its chat template."""
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(settings.output_dir)
    if trainer.is_world_process_zero():
        if settings.chat_template:
            tokenizer.chat_template = settings.chat_template
        tokenizer.save_pretrained(settings.output_dir)
