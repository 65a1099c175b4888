"""Sharding on CPU, as far as the stack allows it.

The Trainer's FSDP runs only on GPUs: accelerate 1.11 switches to FSDP for CUDA-like
devices only (accelerate/state.py, AcceleratorState), so on CPU `train.sharding=fsdp`
is refused with one line. What runs here is PyTorch's FSDP itself, over gloo, on the tiny
model, wrapped the way the Trainer is told to wrap it (full shard, one unit per decoder
layer from decoder_layer_classes, the model's own parameters): each of 2 processes holds
half the parameters, and 4 AdamW steps end within 1e-5 of DDP on the same rows.
bench/gpu_train_check.py runs the Trainer's own FSDP path (sharded checkpoints, resume)
on a GPU machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.paths import REPO  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402
from udfs.training.run import (  # noqa: E402
    TrainSettings,
    decoder_layer_classes,
    train_process,
    training_arguments,
)

TOLERANCE = 1e-5  # fp32 on CPU: the two runs differ only in the order of the reductions


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def torchrun(tiny: Path, mode: str, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "tests.fsdp_worker", str(tiny), mode, str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return torch.load(out)


@pytest.fixture(scope="module")
def runs(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("runs")
    return {mode: torchrun(tiny, mode, out / f"{mode}.pt") for mode in ("fsdp", "ddp")}


def test_each_of_two_processes_holds_half_the_parameters(runs):
    fsdp, ddp = runs["fsdp"], runs["ddp"]
    assert ddp["held"] == [ddp["total"], ddp["total"]]  # DDP: a whole replica each
    assert sum(fsdp["held"]) >= fsdp["total"]  # every parameter is somewhere (shards may pad)
    for held in fsdp["held"]:
        assert abs(held - fsdp["total"] / 2) <= 0.01 * fsdp["total"]


def test_sharded_training_ends_where_unsharded_training_ends(runs, tiny):
    from safetensors.torch import load_file

    fsdp, ddp = runs["fsdp"]["weights"], runs["ddp"]["weights"]
    assert fsdp.keys() == ddp.keys()
    worst = max(float((fsdp[name] - ddp[name]).abs().max()) for name in fsdp)
    assert worst <= TOLERANCE
    start = load_file(str(tiny / "model.safetensors"))  # the steps did move the weights
    assert max(float((ddp[name] - start[name]).abs().max()) for name in start) > 100 * TOLERANCE


def test_the_optimizer_sees_flat_shards_under_fsdp(runs):
    # Why sharded Adafactor is not factored (docs/training.md): each parameter the
    # optimizer steps is a 1-D slice of its FSDP unit's flat shard.
    assert runs["fsdp"]["dims"] == [1]
    assert 2 in runs["ddp"]["dims"]


def test_the_decoder_layer_is_the_unit_of_sharding():
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(REPO / "tests" / "models" / "starcoder2-15b.json")
    assert decoder_layer_classes(config) == ["Starcoder2DecoderLayer"]


def settings(tmp_path: Path, model: Path, **changes) -> TrainSettings:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "Task: add one\n", "response": "return x + 1"}) + "\n")
    return TrainSettings(base_model=str(model), output_dir=str(tmp_path / "out"), train_file=str(data),
                         validation_file=None, **changes)


def test_the_trainer_is_asked_for_full_shards_per_layer_and_sharded_checkpoints(tmp_path, monkeypatch, tiny):
    for key in [k for k in os.environ if k.startswith(("ACCELERATE_", "FSDP_"))]:
        monkeypatch.delenv(key)
    before = dict(os.environ)
    try:
        args = training_arguments(settings(tmp_path, tiny, sharding="fsdp", gradient_checkpointing=True),
                                  ["Starcoder2DecoderLayer"])
    finally:  # TrainingArguments announces FSDP to accelerate through the environment
        os.environ.clear()
        os.environ.update(before)
    assert {str(option) for option in args.fsdp} == {"FSDPOption.FULL_SHARD", "FSDPOption.AUTO_WRAP"}
    config = args.fsdp_config
    assert config["transformer_layer_cls_to_wrap"] == ["Starcoder2DecoderLayer"]
    assert (config["state_dict_type"], config["use_orig_params"], config["activation_checkpointing"]) == (
        "SHARDED_STATE_DICT", True, True)
    assert not args.gradient_checkpointing  # FSDP's own checkpointing, not the Trainer's on top


def test_fsdp_on_cpu_is_refused_in_one_line(tmp_path, tiny):
    result = train_process(settings(tmp_path, tiny, sharding="fsdp"))
    assert result == {"refused": "train.sharding=fsdp needs GPUs (the Trainer shards only on CUDA devices); "
                                 "on CPU set train.sharding=none"}


def test_a_plan_that_cannot_fit_is_refused_before_the_weights_load(tmp_path, tiny, monkeypatch):
    from transformers import AutoModelForCausalLM

    def never(*args, **kwargs):
        raise AssertionError("the weights were read")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", never)
    result = train_process(settings(tmp_path, tiny, gpu_memory_gb=0.5, max_length=1280))
    assert "needs about 2 GiB per GPU, the GPUs have 0 GiB" in result["refused"]
