"""An engine wrapper that meters what passes through it, for the stage's accounting."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from udfs.accounting import Usage
from udfs.llm.base import Engine, Generation, SamplingParams


def generation_tokens(generations: Sequence[Generation]) -> tuple[int, int]:
    """Tokens in (each prompt once: vLLM prefills a prompt once for its n samples) and out
    of a batch of generations; an engine that reports no counts counts 0."""
    tokens_in = tokens_out = 0
    for generation in generations:
        prompt = [c.prompt_tokens for c in generation.completions if c.prompt_tokens is not None]
        tokens_in += max(prompt, default=0)
        tokens_out += sum(c.completion_tokens or 0 for c in generation.completions)
    return tokens_in, tokens_out


class MeteredEngine:
    """Counts tokens in and out and the seconds spent inside `generate`; `take()` hands
    the usage since the last take over to the caller."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._usage = Usage()

    def generate(self, prompts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        started = time.monotonic()
        try:
            generations = self.engine.generate(prompts, params)
        finally:
            self._usage.engine_seconds += time.monotonic() - started
        tokens_in, tokens_out = generation_tokens(generations)
        self._usage.tokens_in += tokens_in
        self._usage.tokens_out += tokens_out
        return generations

    def check(self) -> None:
        self.engine.check()

    def describe(self) -> dict[str, Any]:
        return self.engine.describe()

    def take(self) -> Usage:
        usage, self._usage = self._usage, Usage()
        return usage


def held_gpus(engine: Engine) -> int:
    """GPUs the engine holds in this process (0 for a remote endpoint or a CPU model)."""
    count: Callable[[], int] | None = getattr(engine, "held_gpus", None)
    return int(count()) if count is not None else 0
