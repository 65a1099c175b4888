"""Engine running `vllm.LLM` in-process on a GPU executor.

vllm is imported lazily (it is the [gpu] extra, absent on CPU machines and in
CI) and the model is loaded on the first generate(), once per Python worker:
udfs.llm.registry.get_engine caches this engine, and ONE_PER_PROCESS makes a change of
model settings replace (and free) the previous model instead of loading a
second one onto the same GPU.

generate() hands the whole batch to one `LLM.generate` call: vLLM's continuous
batching keeps the GPU full only when it sees many prompts at once. A prompt whose
SamplingParams.add_bos is set goes as token ids (`engine_inputs`), so its BOS is exactly
the one training put there, whatever the tokenizer adds by default.

Per-prompt errors: vLLM rejects a whole batch if one prompt is longer than the
model's context, so such prompts are measured first with the model's tokenizer
and answered with a non-transient per-prompt error; the rest are generated.
Any other vLLM failure is an engine failure (the Spark task fails and retries).

Importing this module imports only udfs.llm.base: vllm and torch are imported
inside the functions that need them (CPU machines and CI do not have them).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any

from udfs.llm.base import (
    Completion,
    EngineSettings,
    EngineUnavailable,
    Generation,
    SamplingParams,
    params_per_prompt,
    prompt_token_ids,
)

INSTALL_HINT = "pip install 'selfalign[gpu]' on a CUDA machine"


class VLLMEngine:
    # Only these fields change the loaded model (udfs.llm.registry.cache_key).
    CACHE_FIELDS = (
        "model",
        "dtype",
        "tensor_parallel_size",
        "max_model_len",
        "gpu_memory_utilization",
        "seed",
    )
    ONE_PER_PROCESS = True
    # The model loads inside executor tasks: on a cluster the driver (often a CPU node in
    # cluster deploy mode) need not have vllm or a GPU, so the stage's start-up check is
    # left to the tasks (`_load` checks before loading). See generation.require_engine.
    RUNS_IN_TASKS = True

    def __init__(self, cfg: EngineSettings) -> None:
        self.cfg = cfg
        self._llm: Any = None

    def held_gpus(self) -> int:
        """The GPUs the model is sharded over, for GPU-seconds (udfs/accounting.py)."""
        return self.cfg.tensor_parallel_size

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"engine": "vllm", **llm_kwargs(self.cfg)}
        version = _vllm_version()
        if version:
            info["vllm"] = version
        return info

    def check(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise EngineUnavailable(
                f"llm.engine is 'vllm' but vllm is not installed: {INSTALL_HINT}, or set "
                "llm.engine=openai with llm.base_url=http://host:8000/v1 (a `vllm serve` elsewhere)"
            )
        if not _cuda_available():
            raise EngineUnavailable(
                "llm.engine is 'vllm' but this machine has no CUDA GPU visible to torch: run on "
                "GPU executors, or set llm.engine=openai with llm.base_url=http://host:8000/v1"
            )

    def generate(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        per_prompt = params_per_prompt(prompts, params)
        if not prompts:
            return []
        llm = self._load()
        results: list[Generation | None] = [None] * len(prompts)
        limit = _context_limit(llm, self.cfg)
        inputs = engine_inputs(llm, prompts, per_prompt)
        keep: list[int] = []
        for index, length in enumerate(_prompt_lengths(llm, inputs, limit)):
            if limit is not None and length >= limit:
                results[index] = too_long(length, limit)
            else:
                keep.append(index)
        if keep:
            vllm_params = _vllm().SamplingParams
            outputs = llm.generate(
                [inputs[i] for i in keep],
                [vllm_params(**vllm_sampling_kwargs(per_prompt[i])) for i in keep],
                use_tqdm=False,
            )
            # strict=False: a missing output becomes that prompt's error below.
            for index, output in zip(keep, outputs, strict=False):
                results[index] = Generation(completions=tuple(to_completions(output)))
        return [result if result is not None else Generation.failed("no output", True) for result in results]

    def close(self) -> None:
        """Drop the model so its GPU memory can be reused (best effort: vLLM keeps some)."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        del llm
        try:
            import gc

            import torch  # pyright: ignore[reportMissingImports]

            gc.collect()
            torch.cuda.empty_cache()
        except Exception:  # torch missing or CUDA gone: nothing more to free
            pass

    def _load(self) -> Any:
        if self._llm is None:
            self.check()
            # vLLM's own workers must not fork a process that already holds CUDA
            # state (Spark's Python worker may have); spawn is the safe method.
            os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
            self._llm = _vllm().LLM(**llm_kwargs(self.cfg))
        return self._llm


# --- mapping (pure, unit-tested with plain stand-ins for vLLM objects) -------------------


def llm_kwargs(cfg: EngineSettings) -> dict[str, Any]:
    """EngineSettings -> vllm.LLM(...) keyword arguments."""
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "dtype": cfg.dtype,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "seed": cfg.seed,
    }
    if cfg.max_model_len is not None:
        kwargs["max_model_len"] = cfg.max_model_len
    return kwargs


def vllm_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Our SamplingParams -> vllm.SamplingParams(...) keyword arguments."""
    return {
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "stop": list(params.stop),
        "seed": params.seed,
    }


def to_completions(output: Any) -> list[Completion]:
    """A vllm RequestOutput (prompt_token_ids, outputs[].text/finish_reason/token_ids)."""
    prompt_tokens = len(output.prompt_token_ids or ())
    return [
        Completion(
            text=sample.text,
            finish_reason=sample.finish_reason or "unknown",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(sample.token_ids or ()),
        )
        for sample in sorted(output.outputs, key=lambda s: getattr(s, "index", 0))
    ]


def too_long(length: int, limit: int) -> Generation:
    return Generation.failed(
        f"prompt is {length} tokens, the model context is {limit} (llm.max_model_len)",
        transient=False,
    )


def engine_inputs(llm: Any, prompts: Sequence[str],
                  params: Sequence[SamplingParams]) -> list[str | dict[str, list[int]]]:
    """What LLM.generate is given per prompt: the text (vLLM tokenizes it with the
    tokenizer's defaults), or, where params.add_bos is set, its token ids
    (prompt_token_ids: exactly one BOS first, or none) as a vLLM TokensPrompt."""
    if all(p.add_bos is None for p in params):
        return list(prompts)
    tokenizer = llm.get_tokenizer()
    return [prompt if p.add_bos is None else {"prompt_token_ids": prompt_token_ids(tokenizer, prompt, p.add_bos)}
            for prompt, p in zip(prompts, params, strict=True)]


def _prompt_lengths(llm: Any, inputs: Sequence[str | dict[str, list[int]]], limit: int | None) -> list[int]:
    if limit is None:
        return [0] * len(inputs)
    tokenizer = llm.get_tokenizer()
    return [len(item["prompt_token_ids"]) if isinstance(item, dict) else len(tokenizer.encode(item))
            for item in inputs]


def _context_limit(llm: Any, cfg: EngineSettings) -> int | None:
    """The model's context length: configured, else what vLLM derived from the model."""
    if cfg.max_model_len is not None:
        return cfg.max_model_len
    engine = getattr(llm, "llm_engine", None)
    model_config = getattr(engine, "model_config", None)
    value = getattr(model_config, "max_model_len", None)
    return value if isinstance(value, int) else None


def _vllm() -> Any:
    """The vllm package, imported on first use.

    By name, not `from vllm import ...`: inside this module of the same name, a type
    checker that cannot find vllm (CPU machines, CI) takes the name for this file.
    """
    return importlib.import_module("vllm")


def _vllm_version() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return None
    from importlib import metadata

    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return None


def _cuda_available() -> bool:
    try:
        import torch  # pyright: ignore[reportMissingImports]
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
