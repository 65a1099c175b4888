"""Training throughput: `selfalign train` (Spark driver, TorchDistributor in local mode,
torchrun, our Trainer setup) against a plain Hugging Face Trainer script on the same
tiny model and the same pairs, in the same run on the same machine.

Printed: training tokens/s of each (tokens of the pairs x epochs / the Trainer's own
train_runtime) and their ratio (target >= 0.9: the Spark wrapping costs nothing
measurable once training runs), and the wall time of each from start to saved model
(where the wrapping's fixed cost shows: the JVM, staging the pairs, starting torchrun).
The baseline runs before and after ours; the better of its two runs counts.

    .venv/bin/python bench/train_bench.py [--pairs 400] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.test_train import sft_rows  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402


def plain_trainer(model_dir: Path, pairs: list[dict[str, str]], out: Path, steps: int) -> float:
    """The baseline: a Trainer script as a user would write it; returns tokens/s."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from udfs.training.data import encode_pair, pad_batch

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [encode_pair(tokenizer, p["prompt"], p["response"], 1280) for p in pairs]
    data = [{"input_ids": r.input_ids, "labels": r.labels} for r in rows if r is not None]

    def collate(batch: list[dict]) -> dict:
        return {k: torch.tensor(v) for k, v in pad_batch(batch, tokenizer.pad_token_id).items()}

    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
                             gradient_accumulation_steps=2, learning_rate=1e-3, optim="adafactor",
                             warmup_ratio=0.05, lr_scheduler_type="linear", max_grad_norm=0.0,
                             save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=50,
                             remove_unused_columns=False, use_cpu=True, seed=42)
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                      train_dataset=data, data_collator=collate)
    result = trainer.train()
    trainer.save_model(str(out))
    tokens = sum(len(d["input_ids"]) for d in data)
    return tokens * float(result.metrics["epoch"]) / float(result.metrics["train_runtime"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200)
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from pyspark.sql import SparkSession

    from jobs.core.config import load_config
    from jobs.core.context import Context
    from schemas import SFT, TRAIN_RUNS
    from udfs.prompts import load_sft_template

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny")
        lake = root / "lake"
        ctx = Context.create(load_config(None, [f"lake.root={lake}"]))
        ctx.lake.append(SFT, ctx.spark.createDataFrame(sft_rows(options.pairs), SFT.schema))
        SparkSession.getActiveSession().stop()  # type: ignore[union-attr]
        template = load_sft_template()
        pairs = [{"prompt": template.prompt(r[1]), "response": r[2]} for r in sft_rows(options.pairs)]

        start = time.perf_counter()
        first = plain_trainer(model, pairs, root / "plain", options.steps)
        plain_wall = time.perf_counter() - start

        settings = [f"lake.root={lake}", f"train.base_model={model}", f"train.output_dir={root / 'ours'}",
                    f"train.max_steps={options.steps}", "train.save_steps=100000",
                    "train.per_device_batch_size=4", "train.effective_batch_size=8",
                    "train.learning_rate=1e-3", "export.validation_fraction=0"]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs.cli", "train",
                        *[a for s in settings for a in ("--set", s)]], cwd=REPO, check=True,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL)
        ours_wall = time.perf_counter() - start
        ctx = Context.create(load_config(None, [f"lake.root={lake}"]))
        ours = json.loads(ctx.lake.read(TRAIN_RUNS).toJSON().first())["tokens_per_second"]
        # The baseline again, after ours: its best run counts (the first pays warm-up).
        plain = max(first, plain_trainer(model, pairs, root / "plain2", options.steps))

    print(f"cores: {os.cpu_count()}; {options.pairs} pairs, {options.steps} steps, tiny Llama (hidden 64)")
    print(f"plain Trainer:   {plain:10.0f} tokens/s  wall {plain_wall:6.1f}s")
    print(f"selfalign train: {ours:10.0f} tokens/s  wall {ours_wall:6.1f}s")
    print(f"ratio (selfalign / plain): {ours / plain:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
