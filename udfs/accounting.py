"""What a stage run used and what it cost: plain values, summed on executors and driver.

Executors put a task's usage on its outcome rows (schemas/outcome.py `USAGE` columns: tokens in and out,
engine seconds, GPU-seconds, sandbox CPU-seconds); the runner sums them per chunk with
the same `DataFrame.observe` that counts kept and rejected rows, so accounting adds no
Spark job. `Usage.cost(prices)` turns a run's usage into an estimate.

Definitions, the same for every engine:

- tokens in: each prompt's own tokens, once per prompt (vLLM prefills a prompt once for
  its n samples); tokens out: every completion's tokens.
- engine seconds: time inside the engine's `generate` calls, summed over tasks.
- GPU-seconds: the time a task held its GPUs (from the engine's load to its last answer)
  times the GPUs it held; 0 for an engine that holds none (a remote endpoint, priced by
  its tokens instead).
- CPU-seconds: the sandbox's measure of each generated program (its cgroup, else its
  processes), summed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from schemas.outcome import CPU_SECONDS, ENGINE_SECONDS, GPU_SECONDS, TOKENS_IN, TOKENS_OUT


@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    engine_seconds: float = 0.0
    gpu_seconds: float = 0.0
    cpu_seconds: float = 0.0

    def add(self, other: Usage) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @classmethod
    def from_columns(cls, values: Mapping[str, Any]) -> Usage:
        """From the observed sums of the USAGE columns (absent or null: 0)."""
        return cls(int(values.get(TOKENS_IN) or 0), int(values.get(TOKENS_OUT) or 0),
                   float(values.get(ENGINE_SECONDS) or 0.0), float(values.get(GPU_SECONDS) or 0.0),
                   float(values.get(CPU_SECONDS) or 0.0))

    def columns(self) -> dict[str, float | int]:
        """The USAGE columns of one outcome row carrying this usage."""
        return {TOKENS_IN: self.tokens_in, TOKENS_OUT: self.tokens_out,
                ENGINE_SECONDS: round(self.engine_seconds, 6), GPU_SECONDS: round(self.gpu_seconds, 6),
                CPU_SECONDS: round(self.cpu_seconds, 6)}

    def cost(self, prices: Prices) -> float | None:
        """Estimated cost in the prices' currency; None when no price is set."""
        if not prices.any_set():
            return None
        per_million = 1_000_000
        return round(
            self.gpu_seconds / 3600 * (prices.gpu_hour or 0.0)
            + self.cpu_seconds / 3600 * (prices.cpu_hour or 0.0)
            + self.tokens_in / per_million * (prices.input_token_million or 0.0)
            + self.tokens_out / per_million * (prices.output_token_million or 0.0),
            6,
        )


class PricesLike(Protocol):
    gpu_hour: float | None
    cpu_hour: float | None
    input_token_million: float | None
    output_token_million: float | None


@dataclass(frozen=True)
class Prices:
    """The `cost.*` keys: prices per GPU-hour, per sandbox CPU-hour and per million tokens
    in and out (a hosted endpoint's)."""

    gpu_hour: float | None = None
    cpu_hour: float | None = None
    input_token_million: float | None = None
    output_token_million: float | None = None

    @classmethod
    def from_settings(cls, cfg: PricesLike) -> Prices:
        return cls(cfg.gpu_hour, cfg.cpu_hour, cfg.input_token_million, cfg.output_token_million)

    def any_set(self) -> bool:
        return any(price is not None for price in
                   (self.gpu_hour, self.cpu_hour, self.input_token_million, self.output_token_million))
