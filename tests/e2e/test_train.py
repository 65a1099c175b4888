"""`selfalign train` end to end on a tiny model built here (tests/tiny_model.py): the
command (Spark, TorchDistributor in local mode, torchrun, Hugging Face Trainer on CPU),
once in this process, once in its own process killed mid-run and then resumed; its
checkpoint loaded and evaluated, its run in `train_runs` and in an MLflow file store."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from jobs.stages import evaluate
from schemas import SFT, TRAIN_RUNS
from tests.lakes import new_context
from tests.paths import BENCHMARKS, REPO
from tests.tiny_model import build_tiny_model

pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:Filesystem tracking backend:FutureWarning")]

# Enough steps that a kill lands mid-run and the loss falls; a checkpoint every 10 optimizer steps.
STEPS, SAVE_EVERY = 60, 10


def sft_rows(count: int) -> list[tuple]:
    rows = []
    for i in range(count):
        instruction = f"Write a Python function add_{i}(x) that returns x plus {i}."
        response = f"```python\ndef add_{i}(x):\n    return x + {i}\n```\n\nIt adds {i}."
        rows.append((f"i{i:03d}", instruction, response, f"r{i:03d}", f"s{i:03d}", None, None, None, None,
                     None, "function implementation", "easy", "tiny", "respond-v2", None, None, None,
                     None, None, "t"))
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train") / "lake"
    ctx = new_context(root)
    ctx.lake.append(SFT, spark.createDataFrame(sft_rows(40), SFT.schema))
    return root


def settings(lake: Path, tiny: Path, out: Path, *more: str) -> list[str]:
    values = [f"lake.root={lake}", f"train.base_model={tiny}", f"train.output_dir={out}",
              f"train.max_steps={STEPS}", f"train.save_steps={SAVE_EVERY}",
              "train.per_device_batch_size=4", "train.effective_batch_size=8", "train.learning_rate=1e-3",
              "export.validation_fraction=0.1", *more]
    return [arg for value in values for arg in ("--set", value)]


def start_train(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def train_here(args: list[str]) -> None:
    """`selfalign train` in this process, on the tests' Spark session (no JVM to start)."""
    from jobs.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", *args])
    assert done.value.code == 0


def descendants(pid: int) -> list[int]:
    """Every living process below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(lake: Path, tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("whole") / "model"
    mlruns = tmp_path_factory.mktemp("mlruns")
    train_here(settings(lake, tiny, out, "train.mlflow_experiment=selfalign-test",
                        f"train.mlflow_tracking_uri=file:{mlruns}"))
    return out, mlruns


@pytest.fixture(scope="module")
def killed(lake: Path, tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The real command in its own process, killed with everything it started once its
    second checkpoint is on disk; its output up to then."""
    out = tmp_path_factory.mktemp("killed") / "model"
    process = start_train(settings(lake, tiny, out))
    checkpoint = out / "checkpoints" / f"checkpoint-{2 * SAVE_EVERY}"
    deadline = time.monotonic() + 300
    while not (checkpoint / "trainer_state.json").is_file():
        assert process.poll() is None, process.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    # The machine dies mid-run: the driver, torchrun and the trainer (which torchrun starts
    # in a session of its own, so the driver's process group is not enough).
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    output, _ = process.communicate(timeout=60)
    return out, output


def test_the_checkpoint_is_a_hugging_face_model_and_the_run_is_recorded(uninterrupted, lake, spark):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = uninterrupted
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.attention_dropout == 0.0  # the recipe: every dropout off
    assert AutoTokenizer.from_pretrained(out).eos_token == "<|endoftext|>"
    ctx = new_context(lake)
    rows = ctx.lake.read(TRAIN_RUNS).where(f"output_dir = '{out}'").collect()
    assert len(rows) == 1
    row = rows[0]
    newest = ctx.lake.history(SFT, limit=1).first()["version"]  # the sft commit it read
    assert (row["steps"], row["sft_version"], row["template_version"]) == (STEPS, newest, "sft-template-v1")
    assert row["train_pairs"] + row["validation_pairs"] == 40 and row["validation_pairs"] > 0
    assert row["validation_loss"] is not None and row["tokens_per_second"] > 0
    hyper = json.loads(row["hyperparameters"])
    assert (hyper["optimizer"], hyper["scheduler"], hyper["warmup_ratio"], hyper["max_grad_norm"]) == (
        "adafactor", "linear", 0.05, 0.0)
    assert hyper["gradient_accumulation"] == 2  # 8 / (4 per device x 1 process)


def test_loss_on_a_small_repeated_set_falls(uninterrupted, tiny):
    out, mlruns = uninterrupted
    import mlflow

    mlflow.set_tracking_uri(f"file:{mlruns}")
    runs = mlflow.search_runs(experiment_names=["selfalign-test"], output_format="list")
    assert len(runs) == 1
    metrics, params = runs[0].data.metrics, runs[0].data.params
    assert (params["learning_rate"], params["base_model"]) == ("0.001", str(tiny))
    # 36 training pairs seen ~13 times each: the loss falls at every logged step, the last
    # well below the first (a random model that learns nothing stays near log(vocab)).
    history = json.loads((out / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in history["log_history"] if "loss" in entry]
    assert len(losses) == STEPS // 10 and all(b < a for a, b in itertools.pairwise(losses)), losses
    assert losses[-1] < 0.7 * losses[0], losses
    assert metrics["train_loss"] < losses[0]


def test_a_killed_run_resumes_to_the_same_weights(uninterrupted, killed, lake, tiny):
    out, output = killed
    assert f"[train] step {SAVE_EVERY}/{STEPS} loss" in output and "eta" in output  # progress
    assert not (out / "model.safetensors").exists()
    train_here(settings(lake, tiny, out))
    whole, resumed = weights(uninterrupted[0]), weights(out)
    assert whole.keys() == resumed.keys()
    different = [name for name in whole if not bool((whole[name] == resumed[name]).all())]
    assert different == []
    row = new_context(lake).lake.read(TRAIN_RUNS).where(f"output_dir = '{out}'").collect()[0]
    assert row["resumed_from"] and "checkpoint-" in row["resumed_from"]


def test_the_same_data_and_settings_train_nothing_again(uninterrupted, lake, tiny, capsys):
    out = uninterrupted[0]
    before = (out / "model.safetensors").stat().st_mtime_ns
    train_here(settings(lake, tiny, out, "train.mlflow_experiment=selfalign-test",
                        f"train.mlflow_tracking_uri=file:{uninterrupted[1]}"))
    assert "already trained" in capsys.readouterr().err
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    assert new_context(lake).lake.read(TRAIN_RUNS).where(f"output_dir = '{out}'").count() == 1


@pytest.mark.skipif(not (BENCHMARKS / "mbpp.jsonl").is_file(), reason="benchmark files not found")
def test_evaluate_runs_on_the_checkpoint_through_the_transformers_engine(uninterrupted, tmp_path):
    out = uninterrupted[0]
    ctx = new_context(tmp_path / "eval", f"benchmarks.dir={BENCHMARKS}", "llm.engine=transformers",
                      f"llm.model={out}", "evaluate.limit=1", "evaluate.max_tokens=24",
                      "evaluate.prompt_format=instruct", "evaluate.sets=[humaneval, mbpp]")
    outcome = evaluate.run_evaluation(ctx)
    assert outcome.missing == {}
    assert {(r["benchmark"], r["variant"]) for r in outcome.results} == {("humaneval", "base"), ("mbpp", "base")}
    assert outcome.model == str(out)  # a tiny random model: the score is ~0, the path is the point


def test_missing_torch_is_one_line_naming_the_extra(monkeypatch, capsys):
    from jobs.cli import main
    from jobs.stages import train

    real = train.importlib.util.find_spec
    monkeypatch.setattr(train.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(SystemExit) as done:
        main(["train"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err == "selfalign: error: train: torch not installed: pip install 'selfalign[train]' " \
                  "(torch, transformers, accelerate)\n"
