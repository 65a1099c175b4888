"""The training process: Hugging Face Trainer on the SFT pairs, the published recipe.

`train_process(settings)` is what TorchDistributor starts in every process (one per GPU,
or one on CPU); under torchrun the Trainer joins the process group itself. It reads the
pairs the driver staged as JSONL, resumes from the newest checkpoint in
`<output_dir>/checkpoints` when there is one (a killed run ends with the same weights as
an uninterrupted one), and the first process writes the model and tokenizer
(safetensors) to `output_dir`. It returns the figures for the `train_runs` row.
"""

from __future__ import annotations

import fcntl
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

    @property
    def gradient_accumulation(self) -> int:
        """Steps per optimizer update so per-device batch x steps x processes = effective."""
        return max(1, math.ceil(self.effective_batch_size / (self.per_device_batch_size * self.processes)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# What a checkpoint holds once the Trainer has finished writing it (trainer_state.json is
# written last): a kill during a save leaves a directory without some of these.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def last_complete_checkpoint(directory: Path) -> str | None:
    """The newest checkpoint-N in `directory` that was written whole, or None."""
    found = []
    for path in directory.glob("checkpoint-*") if directory.is_dir() else ():
        step = path.name.removeprefix("checkpoint-")
        weights = (path / "model.safetensors").is_file() or any(path.glob("model-*.safetensors"))
        if step.isdigit() and weights and all((path / name).is_file() for name in CHECKPOINT_FILES):
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


def training_arguments(settings: TrainSettings) -> Any:
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
    )


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


def train_process(settings: TrainSettings) -> dict[str, Any]:
    """Train, save, and return the figures (on every process; the driver keeps rank 0's)."""
    with exclusive(settings.output_dir):
        return _train(settings)


def _train(settings: TrainSettings) -> dict[str, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer
    from transformers.trainer_callback import PrinterCallback

    _log_to_stderr()

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(settings.base_model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_rows, skipped = encode_file(tokenizer, settings.train_file, settings.max_length)
    validation_rows: list[Encoded] = []
    if settings.validation_file:
        validation_rows, _ = encode_file(tokenizer, settings.validation_file, settings.max_length)
    if not train_rows:
        raise ValueError("no training pair fits train.max_length")
    config = AutoConfig.from_pretrained(settings.base_model)
    model = AutoModelForCausalLM.from_pretrained(
        settings.base_model, **_without_dropout(config, settings.dropout))

    args = training_arguments(settings)
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
    validation_loss = trainer.evaluate()["eval_loss"] if validation_rows else None
    if trainer.is_world_process_zero():
        trainer.save_model(settings.output_dir)  # safetensors
        tokenizer.save_pretrained(settings.output_dir)
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
    }
