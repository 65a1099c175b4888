"""Building an engine from `EngineSettings`, and one cached engine per Python worker.

Engines: "none" (`NoEngine` below), "openai" (udfs/llm/openai.py), "vllm"
(udfs/llm/vllm.py) and "python:<module>:<Class>" (any class constructed with the
EngineSettings; how tests plug in tests/fake_engine.py on Spark executors).

The openai and vllm modules are imported only when their engine is asked for:
they import udfs.llm.base, never this module, so the package has no import
cycle, and a CPU machine never imports what the vllm engine needs.

`get_engine` caches one engine per settings in the Python worker, so vLLM loads
the model once.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from udfs.llm.base import Engine, EngineSettings, EngineUnavailable, Generation, SamplingParams
from udfs.llm.gpus import CUDA_VISIBLE_DEVICES

PYTHON_PREFIX = "python:"
HOW_TO_CONFIGURE = (
    "set llm.engine=openai with llm.base_url=http://host:8000/v1 and llm.model=<served model>, "
    "or llm.engine=vllm on a GPU cluster"
)


# --- the "none" engine ----------------------------------------------------------------


@dataclass
class NoEngine:
    """llm.engine=none: every use says how to configure a real engine."""

    cfg: EngineSettings | None = field(default=None, repr=False)

    def check(self) -> None:
        raise EngineUnavailable(f"llm.engine is 'none': {HOW_TO_CONFIGURE}")

    def generate(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        self.check()
        return []  # unreachable: check() raises

    def describe(self) -> dict[str, Any]:
        return {"engine": "none"}


# --- construction ---------------------------------------------------------------------


def make_engine(settings: EngineSettings) -> Engine:
    """A new engine for settings.engine; cheap (models and connections are opened lazily)."""
    return engine_class(settings)(settings)


def engine_class(settings: EngineSettings) -> Any:
    name = settings.engine
    if name == "none":
        return NoEngine
    if name == "openai":
        from udfs.llm.openai import OpenAIEngine

        return OpenAIEngine
    if name == "vllm":
        from udfs.llm.vllm import VLLMEngine

        return VLLMEngine
    if name == "transformers":
        from udfs.llm.transformers_engine import TransformersEngine

        return TransformersEngine
    if name.startswith(PYTHON_PREFIX):
        return load_class(name)
    raise EngineUnavailable(f"llm.engine '{name}' is unknown: {HOW_TO_CONFIGURE}")


def load_class(spec: str) -> Any:
    """`python:<module>:<Class>` -> the class; a one-line error naming llm.engine otherwise."""
    module_name, _, class_name = spec[len(PYTHON_PREFIX) :].partition(":")
    if not module_name or not class_name:
        raise EngineUnavailable(f"llm.engine '{spec}' must look like python:<module>:<Class>")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineUnavailable(
            f"llm.engine '{spec}': cannot import module '{module_name}' ({exc})"
        ) from None
    cls = getattr(module, class_name, None)
    if not callable(cls):
        raise EngineUnavailable(f"llm.engine '{spec}': module '{module_name}' has no class '{class_name}'")
    return cls


# --- the per-worker cache -------------------------------------------------------------

_CACHE: dict[str, Engine] = {}
_CACHE_LOCK = threading.Lock()


def cache_key(settings: EngineSettings) -> str:
    """The settings the engine uses (an engine class may name them in CACHE_FIELDS).

    vLLM names only its model settings, so a change of, say, llm.concurrency does not
    load a second copy of the model onto the same GPU; and, holding one model per
    process, the GPUs it may use.
    """
    cls = engine_class(settings)
    values = asdict(settings)
    names = getattr(cls, "CACHE_FIELDS", None)
    if names is not None:
        values = {name: values[name] for name in ("engine", *names)}
    if getattr(cls, "ONE_PER_PROCESS", False):
        # Its model sits on the GPUs visible when it loaded. A reused Python worker whose
        # new task Spark pinned to other GPUs (udfs/llm/gpus.py) gets the model loaded
        # there, and the old one closed, freeing the card Spark may now give another task.
        values["visible_devices"] = os.environ.get(CUDA_VISIBLE_DEVICES)
    return json.dumps(values, sort_keys=True)


def get_engine(settings: EngineSettings) -> Engine:
    """The engine for settings, built once per Python worker (vLLM loads its model once).

    An engine class with ONE_PER_PROCESS (vLLM: the GPU holds one model) replaces,
    and closes, any cached engine of the same class built from other settings.
    """
    key = cache_key(settings)
    cls = engine_class(settings)
    evicted: list[Engine] = []
    with _CACHE_LOCK:
        engine = _CACHE.get(key)
        if engine is None:
            if getattr(cls, "ONE_PER_PROCESS", False):
                for other_key, other in list(_CACHE.items()):
                    if type(other) is cls:
                        evicted.append(_CACHE.pop(other_key))
            engine = cls(settings)
            _CACHE[key] = engine
    for old in evicted:
        _close(old)
    return engine


def clear_engine_cache() -> None:
    """Drop cached engines, closing those that hold connections (tests, notebooks)."""
    with _CACHE_LOCK:
        engines = list(_CACHE.values())
        _CACHE.clear()
    for engine in engines:
        _close(engine)


def _close(engine: Engine) -> None:
    close = getattr(engine, "close", None)
    if callable(close):
        close()
