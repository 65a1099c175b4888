"""Usage and its cost (udfs/accounting.py), and the metering engine wrapper."""

from __future__ import annotations

import pytest

from tests.fake_engine import FakeEngine
from udfs.accounting import Prices, Usage
from udfs.llm import Completion, Generation, SamplingParams
from udfs.llm.metered import MeteredEngine, generation_tokens, held_gpus


def test_cost_prices_each_part_of_the_usage():
    usage = Usage(tokens_in=2_000_000, tokens_out=500_000, gpu_seconds=7_200, cpu_seconds=1_800)
    prices = Prices(gpu_hour=3.0, cpu_hour=0.1, input_token_million=0.5, output_token_million=2.0)
    # 2 GPU-h x 3 + 0.5 CPU-h x 0.1 + 2 M x 0.5 + 0.5 M x 2
    assert usage.cost(prices) == pytest.approx(6 + 0.05 + 1 + 1)


def test_no_price_set_means_no_cost_rather_than_zero():
    assert Usage(tokens_in=10, gpu_seconds=100).cost(Prices()) is None
    assert Usage(gpu_seconds=3600).cost(Prices(gpu_hour=2.0)) == pytest.approx(2.0)


def test_usage_adds_up_and_reads_back_from_observed_sums():
    total = Usage()
    total.add(Usage(1, 2, 0.5, 1.0, 0.25))
    total.add(Usage.from_columns(Usage(10, 20, 1.5, 2.0, 0.75).columns()))
    assert total == Usage(11, 22, 2.0, 3.0, 1.0)
    assert Usage.from_columns({"_tokens_in": None}) == Usage()


def test_a_prompt_counts_once_however_many_samples_it_has():
    three = Generation(completions=tuple(Completion("x", "stop", 12, n) for n in (3, 4, 5)))
    failed = Generation.failed("boom", transient=True)
    unknown = Generation(completions=(Completion("y", "stop"),))  # an engine without counts
    assert generation_tokens([three, failed, unknown]) == (12, 12)


def test_the_metered_engine_counts_what_passes_through_and_take_resets():
    engine = MeteredEngine(FakeEngine(responder=lambda prompt, params: "one two three"))
    engine.generate(["a b", "c d e f"], SamplingParams(n=2, max_tokens=10))
    usage = engine.take()
    assert (usage.tokens_in, usage.tokens_out) == (2 + 4, 2 * 3 * 2)
    assert usage.engine_seconds > 0
    assert engine.take() == Usage()
    assert held_gpus(engine.engine) == 0  # a test double holds no GPU
