"""The one small interface between generation stages and a language model.

Stage code sees `Engine.generate(prompts, params) -> list[Generation]`: one
`Generation` per prompt, in order, holding the prompt's n `Completion`s.

Per-prompt errors: a prompt that still fails after the engine's retries (a
server timing out or answering 5xx/429 every time, a prompt the server rejects
with 400 as too long, ...) does not fail the batch. Its `Generation` has no
completions and an `error` line; `transient` says whether running it again may
succeed (timeouts, 5xx, 429, connection errors) or not (the server rejected
the request). The stage writes the error with the row and regenerates the rows
with errors on the next run, so one bad prompt or a flaky minute of the server
costs those rows a retry instead of the whole chunk. A prompt never returns a
partial set of its n completions: it is all n or an error.

Problems that no prompt can get past (no engine configured, server unreachable
at `check()`, a wrong API key or model name: 401/403/404) raise
`EngineUnavailable`/`EngineError` with one line saying what to change.

Modules, each importing only those before it (no cycle):
- `base`: the interface and plain types, `EngineSettings` (the `llm.*` keys the
  engines read, built on the driver with `EngineSettings.from_settings(cfg.llm)`);
- `openai`: the engine for OpenAI-compatible servers (imports httpx);
- `vllm`: in-process vLLM on a GPU executor (imports vllm lazily);
- `registry`: settings -> engine ("none", "openai", "vllm", "python:<module>:<Class>")
  and the per-worker engine cache; imports openai/vllm only when asked for them.

This package imports base and registry only, so `from udfs.llm import Engine`
pulls in neither httpx nor vllm.
"""

from __future__ import annotations

from udfs.llm.base import (
    CUT_AT_MAX_TOKENS,
    Completion,
    Engine,
    EngineError,
    EngineSettings,
    EngineUnavailable,
    Generation,
    SamplingParams,
    params_per_prompt,
)
from udfs.llm.registry import (
    HOW_TO_CONFIGURE,
    PYTHON_PREFIX,
    NoEngine,
    cache_key,
    clear_engine_cache,
    engine_class,
    get_engine,
    load_class,
    make_engine,
)

__all__ = [
    "CUT_AT_MAX_TOKENS",
    "HOW_TO_CONFIGURE",
    "PYTHON_PREFIX",
    "Completion",
    "Engine",
    "EngineError",
    "EngineSettings",
    "EngineUnavailable",
    "Generation",
    "NoEngine",
    "SamplingParams",
    "cache_key",
    "clear_engine_cache",
    "engine_class",
    "get_engine",
    "load_class",
    "make_engine",
    "params_per_prompt",
]
