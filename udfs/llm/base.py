"""The engine interface and its plain types; imports nothing else of udfs.llm.

Stage code sees `Engine.generate(prompts, params) -> list[Generation]`: one
`Generation` per prompt, in order, holding the prompt's n `Completion`s (the
per-prompt error contract is in udfs/llm/__init__.py).

Everything here is plain Python (frozen dataclasses, a Protocol, two errors) so
that the engines (openai.py, vllm.py) and the registry can all import it
without importing each other, and so that executors unpickle `EngineSettings`
without the driver's pydantic config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Protocol, runtime_checkable


class EngineError(RuntimeError):
    """A failure no prompt of the batch can get past (wrong key, unknown model, ...)."""


class EngineUnavailable(EngineError):
    """No usable engine; the one-line message says what is wrong and which keys to set."""


# The finish reason of a completion cut at max_tokens (OpenAI API, vLLM, our engines).
CUT_AT_MAX_TOKENS = "length"

@dataclass(frozen=True)
class EngineSettings:
    """What the engines read: the `llm.*` keys, as a plain picklable value.

    Defaults are those of jobs.core.config.LLMConfig (tests/unit/test_llm.py checks
    the two agree field for field), except CONSTANTS: no config key sets them (tests
    do, to retry fast). Messages name the keys as `llm.<field>`.
    """

    # "none", "openai", "vllm" or "python:<module>:<Class>" (constructed with these settings).
    engine: str = "none"
    # HF id for vllm; the served model name for openai ("" = the server's first model).
    model: str = "bigcode/starcoder2-15b"
    # --- openai ---
    base_url: str = "http://127.0.0.1:8000/v1"
    api: Literal["completions", "chat"] = "completions"
    # The name of the env var holding the key; the key itself is never stored.
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    check_timeout_seconds: float = 10.0
    max_retries: int = 5
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    # --- vllm ---
    dtype: str = "bfloat16"
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    seed: int = 0  # derived from run.seed (jobs.core.config.derived_seed)

    @classmethod
    def from_settings(cls, settings: object) -> EngineSettings:
        """From any object with these attribute names (CONSTANTS keep their defaults),
        e.g. jobs.core.config.LLMConfig."""
        return cls(**{item.name: getattr(settings, item.name) for item in fields(cls)
                      if item.name not in CONSTANTS})


# The connection and back-off timings: constants of the engines, not config keys.
CONSTANTS = frozenset({"timeout_seconds", "connect_timeout_seconds", "check_timeout_seconds",
                       "max_retries", "backoff_seconds", "backoff_max_seconds"})


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # How the prompt text becomes token ids (prompt_token_ids): None, the engine's own
    # way (the tokenizer's default special tokens, or the server's); True, exactly one
    # BOS first, as training encodes prompts (udfs/training/data.py); False, no BOS.
    add_bos: bool | None = None

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
        if self.add_bos is None:  # the engine's default: lineage and ids as before the key
            del values["add_bos"]
        return values

    def with_sample(self, index: int) -> SamplingParams:
        """One of n samples as its own n=1 request; distinct seeds keep samples distinct."""
        seed = None if self.seed is None else self.seed + index
        return replace(self, n=1, seed=seed)


class TokenizerLike(Protocol):
    bos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def prompt_token_ids(tokenizer: TokenizerLike, text: str, add_bos: bool) -> list[int]:
    """The ids an engine sends for `text` when SamplingParams.add_bos is set: the text
    tokenized without the tokenizer's special tokens, after one BOS id when add_bos and
    the tokenizer has a BOS: also how training encodes a prompt (udfs.training.data.encode_pair). The BOS string
    is never put into the text: a tokenizer that adds BOS itself would add a second."""
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    return bos + list(tokenizer.encode(text, add_special_tokens=False))


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | CUT_AT_MAX_TOKENS | whatever the engine reports
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
