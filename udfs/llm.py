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

Engines: "none", "openai" (udfs/llm_openai.py), "vllm" (udfs/llm_vllm.py) and
"python:<module>:<Class>" (any class constructed with the LLMConfig; how tests
plug in tests/fake_engine.py on Spark executors). `get_engine` caches one
engine per config in the Python worker, so vLLM loads the model once.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from jobs.core.config import LLMConfig

PYTHON_PREFIX = "python:"
HOW_TO_CONFIGURE = (
    "set llm.engine=openai with llm.base_url=http://host:8000/v1 and llm.model=<served model>, "
    "or llm.engine=vllm on a GPU cluster"
)


class EngineError(RuntimeError):
    """A failure no prompt of the batch can get past (wrong key, unknown model, ...)."""


class EngineUnavailable(EngineError):
    """No usable engine; the one-line message says what is wrong and which keys to set."""


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        # A list would make the dataclass unhashable and the lineage JSON order-unstable.
        if not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1 (got {self.n})")
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1 (got {self.max_tokens})")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, stored with each generated row for lineage."""
        values = asdict(self)
        values["stop"] = list(self.stop)
        return values

    def with_sample(self, index: int) -> SamplingParams:
        """One of n samples as its own n=1 request; distinct seeds keep samples distinct."""
        seed = None if self.seed is None else self.seed + index
        return replace(self, n=1, seed=seed)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | whatever the engine reports
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Generation:
    """The n completions of one prompt, or none and an `error` line."""

    completions: tuple[Completion, ...] = ()
    error: str | None = None
    # True when running the prompt again may succeed (timeout, 5xx, 429, network).
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]

    @classmethod
    def failed(cls, error: str, transient: bool) -> Generation:
        return cls(completions=(), error=error, transient=transient)


@runtime_checkable
class Engine(Protocol):
    def generate(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        """One Generation per prompt, in order; per-prompt failures are in the result."""
        ...

    def check(self) -> None:
        """Raise EngineUnavailable (one line, what to configure) unless generate can work."""
        ...

    def describe(self) -> dict[str, Any]:
        """Engine, model and settings for lineage; never secrets."""
        ...


def params_per_prompt(
    prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
) -> list[SamplingParams]:
    """One SamplingParams per prompt: the same for all, or one each (lengths must match)."""
    if isinstance(params, SamplingParams):
        return [params] * len(prompts)
    listed = list(params)
    if len(listed) != len(prompts):
        raise ValueError(f"{len(listed)} SamplingParams for {len(prompts)} prompts")
    return listed


# --- the "none" engine ----------------------------------------------------------------


@dataclass
class NoEngine:
    """llm.engine=none: every use says how to configure a real engine."""

    cfg: LLMConfig | None = field(default=None, repr=False)

    def check(self) -> None:
        raise EngineUnavailable(f"llm.engine is 'none': {HOW_TO_CONFIGURE}")

    def generate(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        self.check()
        return []  # unreachable: check() raises

    def describe(self) -> dict[str, Any]:
        return {"engine": "none"}


# --- construction and the per-worker cache --------------------------------------------


def make_engine(cfg: LLMConfig) -> Engine:
    """A new engine for cfg.engine; cheap (models and connections are opened lazily)."""
    return engine_class(cfg)(cfg)


def engine_class(cfg: LLMConfig) -> Any:
    name = cfg.engine
    if name == "none":
        return NoEngine
    if name == "openai":
        from udfs.llm_openai import OpenAIEngine

        return OpenAIEngine
    if name == "vllm":
        from udfs.llm_vllm import VLLMEngine

        return VLLMEngine
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


_CACHE: dict[str, Engine] = {}
_CACHE_LOCK = threading.Lock()


def cache_key(cfg: LLMConfig) -> str:
    """The config fields the engine uses (an engine class may name them in CACHE_FIELDS).

    vLLM names only its model settings, so a change of, say, llm.concurrency does not
    load a second copy of the model onto the same GPU.
    """
    values = cfg.model_dump(mode="json")
    fields = getattr(engine_class(cfg), "CACHE_FIELDS", None)
    if fields is not None:
        values = {name: values[name] for name in ("engine", *fields)}
    return json.dumps(values, sort_keys=True)


def get_engine(cfg: LLMConfig) -> Engine:
    """The engine for cfg, built once per Python worker (vLLM loads its model once).

    An engine class with ONE_PER_PROCESS (vLLM: the GPU holds one model) replaces,
    and closes, any cached engine of the same class built from other settings.
    """
    key = cache_key(cfg)
    cls = engine_class(cfg)
    evicted: list[Engine] = []
    with _CACHE_LOCK:
        engine = _CACHE.get(key)
        if engine is None:
            if getattr(cls, "ONE_PER_PROCESS", False):
                for other_key, other in list(_CACHE.items()):
                    if type(other) is cls:
                        evicted.append(_CACHE.pop(other_key))
            engine = cls(cfg)
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
