"""The GPU check of `selfalign train`: run it on a machine with one NVIDIA GPU, torch and
transformers (no Spark, no vLLM, no network), from the repository root:

    python bench/gpu_train_check.py [--steps 12] [--out gpu_check.json]
    python bench/gpu_train_check.py --cpu-smoke   # the same code on CPU, tiny sizes

Two random-weight models are built here from configs: a ~1.1B Llama-shaped model
(TinyLlama's shape) and a 4-layer slice of StarCoder2-15B at its real width (2.14B
parameters: the 15B model's layer, embeddings and head). Each is trained by the project's
training process (udfs.training.run.train_process, what TorchDistributor starts on a
cluster) under the shipped defaults and under the best settings found, and by a plain
Hugging Face Trainer script with the same settings, each run in a process of its own (a
clean CUDA memory count). Pairs are 256 prompt + 1024 response tokens: 1,280, the
published sequence length.

Printed per run: training tokens/s (the Trainer's own train_runtime), MFU against the
GPU's peak dense bf16 rate, peak memory (allocated and reserved) and bytes per
parameter, the memory plan's figure beside it, and the ratio to the plain script. Then
one FSDP run on the slice under torchrun (world size 1: the Trainer's FSDP path, sharded
checkpoints), killed after its first checkpoint and resumed, compared with an
uninterrupted run; and the projection for the full StarCoder2-15B on 8 x 80 GB from the
slice's measured MFU and the memory plan.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}
PROMPT_TOKENS, RESPONSE_TOKENS = 256, 1024
STARCODER2_15B = {"model_type": "starcoder2", "architectures": ["Starcoder2ForCausalLM"], "vocab_size": 49152,
                  "hidden_size": 6144, "intermediate_size": 24576, "num_hidden_layers": 40,
                  "num_attention_heads": 48, "num_key_value_heads": 4, "max_position_embeddings": 16384,
                  "sliding_window": 4096, "rope_theta": 100000, "hidden_act": "gelu_pytorch_tanh",
                  "norm_epsilon": 1e-5, "use_bias": True, "tie_word_embeddings": False,
                  "bos_token_id": 0, "eos_token_id": 0}
TINYLLAMA_SHAPE = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
                   "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False,
                   "bos_token_id": 1, "eos_token_id": 2}


def build(directory: Path, config: dict[str, Any], *, layers: int | None = None, shrink: bool = False) -> Path:
    """Random weights (bf16 on disk) and a word-level tokenizer over the whole vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    values = dict(config, **({"num_hidden_layers": layers} if layers else {}))
    if shrink:  # --cpu-smoke: the same shapes' kinds, tiny sizes
        values.update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                      vocab_size=512, num_hidden_layers=2)
    vocab = {f"w{i}": i for i in range(values["vocab_size"])}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="w3"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, eos_token=f"w{values['eos_token_id']}",
                                        bos_token=f"w{values['bos_token_id']}", pad_token="w3", unk_token="w3")
    tokenizer.save_pretrained(directory)
    model_config = AutoConfig.for_model(**values)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config, dtype=torch.bfloat16)
    model.save_pretrained(directory)
    return directory


def pairs_file(path: Path, vocab: int, count: int) -> Path:
    import random

    rng = random.Random(0)
    with path.open("w") as handle:
        for _ in range(count):
            prompt = " ".join(f"w{rng.randrange(4, vocab)}" for _ in range(PROMPT_TOKENS - 1))  # + BOS
            response = " ".join(f"w{rng.randrange(4, vocab)}" for _ in range(RESPONSE_TOKENS - 1))  # + EOS
            handle.write(json.dumps({"prompt": prompt, "response": response}) + "\n")
    return path


def project_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of the project's training process (in this process)."""
    from udfs.training.run import TrainSettings, train_process

    settings = TrainSettings(**spec["settings"])
    started = time.monotonic()
    figures = train_process(settings)
    figures["wall_seconds"] = time.monotonic() - started
    return figures


def plain_run(spec: dict[str, Any]) -> dict[str, Any]:
    """The baseline: a plain Trainer script with the same settings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from udfs.training.data import encode_pair, pad_batch

    s = spec["settings"]
    tokenizer = AutoTokenizer.from_pretrained(s["base_model"])
    rows = [encode_pair(tokenizer, p["prompt"], p["response"], s["max_length"])
            for p in map(json.loads, Path(s["train_file"]).read_text().splitlines())]
    data = [{"input_ids": r.input_ids, "labels": r.labels} for r in rows if r is not None]

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {k: torch.tensor(v) for k, v in pad_batch(batch, tokenizer.pad_token_id).items()}

    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=s["output_dir"], max_steps=s["max_steps"], per_device_train_batch_size=s["per_device_batch_size"],
        gradient_accumulation_steps=max(1, s["effective_batch_size"] // s["per_device_batch_size"]),
        learning_rate=1e-5, optim="adafactor", warmup_ratio=0.05, lr_scheduler_type="linear",
        max_grad_norm=0.0, bf16=cuda, save_strategy="no", report_to=[], disable_tqdm=True,
        remove_unused_columns=False, use_cpu=not cuda, seed=42,
        gradient_checkpointing=s.get("gradient_checkpointing", False))
    model = AutoModelForCausalLM.from_pretrained(s["base_model"], dtype=torch.bfloat16 if cuda else torch.float32,
                                                 attn_implementation="sdpa")
    result = Trainer(model=model, args=args, train_dataset=data, data_collator=collate).train()
    tokens = sum(len(d["input_ids"]) for d in data)
    return {"tokens_per_second": tokens * float(result.metrics["epoch"]) / float(result.metrics["train_runtime"]),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "parameters": model.num_parameters()}


def in_subprocess(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Each run in a fresh process: its own CUDA context and memory peak."""
    spec_file, result_file = work / f"{spec['name']}.spec.json", work / f"{spec['name']}.result.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, __file__, "--one", kind, str(spec_file), str(result_file)],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    return json.loads(result_file.read_text())


def mfu(tokens_per_second: float, shape: Any, seq: int, peak_tflops: float | None) -> float | None:
    """Model FLOPs per token: 6 x parameters + 12 x layers x hidden x sequence (attention)."""
    if not peak_tflops:
        return None
    flops_per_token = 6 * shape.parameters + 12 * shape.layers * shape.hidden * seq
    return tokens_per_second * flops_per_token / (peak_tflops * 1e12)


def peak_rate() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name(0)
    return name, next((rate for key, rate in PEAK_BF16_TFLOPS.items() if key in name), None)


def fsdp_resume_check(model: Path, train_file: Path, work: Path, steps: int) -> dict[str, Any]:
    """The Trainer's FSDP path (sharded checkpoints) under torchrun, killed once its first
    checkpoint is whole and rerun, against an uninterrupted run: the same weights?"""
    from safetensors.torch import load_file

    from udfs.training.run import last_complete_checkpoint

    def launch(out: Path) -> subprocess.Popen[str]:
        spec = {"name": out.name, "settings": base_settings(model, train_file, out, steps, sharding="fsdp",
                                                            save_steps=max(1, steps // 3))}
        spec_file = work / f"{out.name}.spec.json"
        spec_file.write_text(json.dumps(spec))
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                 "1", __file__, "--one", "project", str(spec_file), str(work / f"{out.name}.json")],
                                cwd=REPO, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)

    whole, cut = work / "fsdp-whole", work / "fsdp-killed"
    first = launch(whole)
    _, err = first.communicate()
    if first.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else "failed"}
    killed = launch(cut)
    while last_complete_checkpoint(cut / "checkpoints") is None and killed.poll() is None:
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    resumed = launch(cut)
    _, err = resumed.communicate()
    if resumed.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else "failed"}
    a, b = load_file(str(next(whole.glob("model*.safetensors")))), load_file(str(next(cut.glob("model*.safetensors"))))
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    return {"sharded_checkpoint": (cut / "checkpoints").is_dir() and any((cut / "checkpoints").glob(
        "checkpoint-*/pytorch_model_fsdp_0")), "max_weight_difference": worst}


def base_settings(model: Path, train_file: Path, out: Path, steps: int, **changes: Any) -> dict[str, Any]:
    settings = {"base_model": str(model), "output_dir": str(out), "train_file": str(train_file),
                "validation_file": None, "max_steps": steps, "save_steps": 10_000, "logging_steps": 1,
                "per_device_batch_size": 1, "effective_batch_size": 8, "max_length": 1280}
    settings.update(changes)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--out", default=None, help="write the figures as JSON here too")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU: the script's own check")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        kind, spec_file, result_file = options.one
        spec = json.loads(Path(spec_file).read_text())
        result = project_run(spec) if kind == "project" else plain_run(spec)
        if int(os.environ.get("RANK", "0")) == 0:
            import torch

            if torch.cuda.is_available():
                result["reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            Path(result_file).write_text(json.dumps(result, default=str))
        return

    from udfs.training.memory import GIB, ModelShape, Setup, plan

    device, peak = peak_rate()
    smoke = options.cpu_smoke
    steps = 2 if smoke else options.steps
    report: dict[str, Any] = {"device": device, "peak_bf16_tflops": peak, "runs": []}
    print(f"device: {device}; peak dense bf16: {peak or 'unknown'} TFLOP/s; {steps} optimizer steps per run")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {"llama-1.1b": (TINYLLAMA_SHAPE, None), "starcoder2-15b-4-layers": (STARCODER2_15B, 4)}
        for name, (config, layers) in models.items():
            directory = build(work / name, config, layers=layers, shrink=smoke)
            shape = ModelShape.from_config(json.loads((directory / "config.json").read_text()))
            train_file = pairs_file(work / f"{name}.jsonl", shape.vocab, 8 * steps)
            best_batch = 1 if smoke else (8 if name.startswith("llama") else 4)
            variants = {"defaults": {}, "best": {"per_device_batch_size": best_batch}}
            for label, changes in variants.items():
                spec = {"name": f"{name}-{label}", "settings": base_settings(
                    directory, train_file, work / f"{name}-{label}", steps, **changes)}
                ours = in_subprocess("project", spec, work)
                plain = in_subprocess("plain", {**spec, "name": spec["name"] + "-plain"}, work)
                setup = Setup("bfloat16" if peak else "float32", per_device_batch_size=spec["settings"][
                    "per_device_batch_size"], max_length=1280, mixed_precision=bool(peak))
                row = {"model": name, "settings": label, "parameters": shape.parameters, "ours": ours,
                       "plain": plain, "plan_gib": plan(shape, setup).total_gib}
                if "tokens_per_second" in ours and "tokens_per_second" in plain:
                    row["ratio"] = ours["tokens_per_second"] / plain["tokens_per_second"]
                    row["mfu"] = mfu(ours["tokens_per_second"], shape, 1280, peak)
                    if ours.get("peak_memory_gib"):
                        row["bytes_per_parameter"] = ours["peak_memory_gib"] * GIB / shape.parameters
                report["runs"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("ours", "plain")}),
                      "| ours:", {k: ours.get(k) for k in ("tokens_per_second", "peak_memory_gib", "reserved_gib",
                                                           "memory_plan_gib", "refused", "error")},
                      "| plain:", {k: plain.get(k) for k in ("tokens_per_second", "peak_memory_gib", "error")})
        if peak:
            slice_dir = work / "starcoder2-15b-4-layers"
            report["fsdp_resume"] = fsdp_resume_check(slice_dir, work / "starcoder2-15b-4-layers.jsonl", work,
                                                      max(3, steps // 2))
            print("fsdp resume:", report["fsdp_resume"])
    full = ModelShape.from_config(STARCODER2_15B)
    slice_mfu = [r.get("mfu") for r in report["runs"] if r["model"].startswith("starcoder2") and r.get("mfu")]
    projected = plan(full, Setup("bfloat16", processes=8, sharding="fsdp"))
    report["projection"] = {"plan": projected.line("StarCoder2-15B"), "mfu_used": max(slice_mfu, default=None)}
    if slice_mfu and peak:
        per_gpu = max(slice_mfu) * peak * 1e12 / (6 * full.parameters + 12 * full.layers * full.hidden * 1280)
        report["projection"]["tokens_per_second_8_gpus"] = 8 * per_gpu
    print("projection, StarCoder2-15B on 8 x 80 GB:", json.dumps(report["projection"]))
    if options.out:
        Path(options.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
