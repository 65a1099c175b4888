"""The transformers engine's batching on a tiny random-weight model built once per module:
the mechanics (padding, order, counts, finish reasons, samples), not the quality."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from tests.tiny_model import build_tiny_model, corpus_texts
from udfs.llm import CUT_AT_MAX_TOKENS, EngineSettings, Generation, SamplingParams
from udfs.llm.transformers_engine import (
    EMPTY_PROMPT,
    Row,
    TransformersEngine,
    generated_length,
    plan_batches,
    prepare_tokenizer,
)

# Prompt heads of different lengths (1 to 120 characters): padding is what they test.
LENGTHS = (7, 120, 1, 33, 64, 15, 90, 3)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny model's matrices are too small for torch's intra-op threads to pay, and
    on a busy 2-core machine a thread waiting on a descheduled one slowed runs tenfold."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return [text[:length] for text, length in zip(corpus_texts(40), LENGTHS, strict=False)]


@pytest.fixture(scope="module")
def tokenizer(tiny: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


def engine(model: Path, batch_size: int | None = None) -> TransformersEngine:
    built = TransformersEngine(EngineSettings(engine="transformers", model=str(model), dtype="float32"))
    built.batch_size = batch_size
    return built


def one_at_a_time(model: Path, prompts: list[str], params: list[SamplingParams]) -> list[Generation]:
    """The reference: every prompt a call of its own, every sample a batch of one."""
    alone = engine(model, batch_size=1)
    return [alone.generate([prompt], p)[0] for prompt, p in zip(prompts, params, strict=True)]


GREEDY = SamplingParams(max_tokens=8)


@pytest.fixture(scope="module")
def greedy_alone(tiny: Path, prompts: list[str]) -> list[Generation]:
    return one_at_a_time(tiny, prompts, [GREEDY] * len(prompts))


@pytest.mark.parametrize("batch_size", [3, None])
def test_greedy_batches_equal_one_prompt_at_a_time(tiny: Path, prompts: list[str], greedy_alone: list[Generation],
                                                   batch_size: int | None):
    assert engine(tiny, batch_size).generate(prompts, GREEDY) == greedy_alone


def test_token_counts_and_finish_reasons(tiny: Path, prompts: list[str], tokenizer: Any):
    for max_tokens in (1, 6):
        results = engine(tiny).generate(prompts, SamplingParams(max_tokens=max_tokens))
        for prompt, result in zip(prompts, results, strict=True):
            [done] = result.completions
            assert done.prompt_tokens == len(tokenizer(prompt)["input_ids"])  # unpadded
            assert done.completion_tokens is not None and 1 <= done.completion_tokens <= max_tokens
            # No stop sequences: "stop" only on EOS, which random weights rarely give.
            if done.finish_reason == CUT_AT_MAX_TOKENS:
                assert done.completion_tokens == max_tokens
            elif max_tokens == 1:
                assert (done.finish_reason, done.text) == ("stop", "")  # EOS, skipped when decoded


def test_a_row_that_ends_early_counts_its_tokens_up_to_eos(tiny: Path, prompts: list[str], tokenizer: Any,
                                                           tmp_path: Path):
    """A second EOS id in the generation config (as some models list several): a token one
    prompt generates greedily at step k ends that row at k + 1 tokens, "stop", while the
    batch goes on for another prompt (padding the ended row) up to max_tokens."""
    from transformers import AutoModelForCausalLM

    max_tokens = 8
    model = AutoModelForCausalLM.from_pretrained(tiny)
    generated = [greedy_ids(tokenizer, model, prompt, max_tokens) for prompt in prompts]
    early, late, token, step = ending_token(generated)
    two_eos = tmp_path / "two_eos"
    shutil.copytree(tiny, two_eos)
    config_file = two_eos / "generation_config.json"
    config = json.loads(config_file.read_text())
    config["eos_token_id"] = [tokenizer.eos_token_id, token]
    config_file.write_text(json.dumps(config))

    pair = [prompts[early], prompts[late]]
    params = SamplingParams(max_tokens=max_tokens)
    ended, running = engine(two_eos).generate(pair, params)
    assert (ended.completions[0].completion_tokens, ended.completions[0].finish_reason) == (step + 1, "stop")
    assert ended.completions[0].text == tokenizer.decode(generated[early][:step + 1], skip_special_tokens=True)
    assert (running.completions[0].completion_tokens, running.completions[0].finish_reason) == (
        max_tokens, CUT_AT_MAX_TOKENS)
    assert [ended, running] == one_at_a_time(two_eos, pair, [params] * 2)


def greedy_ids(tokenizer: Any, model: Any, prompt: str, max_tokens: int) -> list[int]:
    import torch

    encoded = tokenizer(prompt, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        output = model.generate(**encoded, do_sample=False, max_new_tokens=max_tokens,
                                pad_token_id=tokenizer.pad_token_id)
    return output[0][encoded["input_ids"].shape[1]:].tolist()


def ending_token(generated: list[list[int]]) -> tuple[int, int, int, int]:
    """(early, late, token, step): prompt `early` first generates `token` at `step` > 0;
    prompt `late` never generates it."""
    for early, ids in enumerate(generated):
        for step, token in enumerate(ids):
            late = next((j for j, other in enumerate(generated) if token not in other), None)
            if step > 0 and token not in ids[:step] and late is not None:
                return early, late, token, step
    raise AssertionError(f"no token ends one prompt early but not another: {generated}")


def test_n_samples_give_n_completions_per_prompt(tiny: Path, prompts: list[str]):
    sampled = SamplingParams(n=3, temperature=1.0, max_tokens=4, seed=7)
    results = engine(tiny).generate(prompts[:4], sampled)
    assert [len(result.completions) for result in results] == [3] * 4
    assert engine(tiny).generate(prompts[:4], sampled) == results  # the same batches reproduce
    greedy = engine(tiny).generate(prompts[:2], SamplingParams(n=3, max_tokens=5))
    assert all(len(set(result.completions)) == 1 for result in greedy)  # greedy: n equal


def test_order_is_kept_with_mixed_params(tiny: Path, prompts: list[str], tokenizer: Any):
    """Interleaved groups (greedy of two lengths, sampled with n=2, a stop sequence)."""
    mixed = [SamplingParams(max_tokens=4), SamplingParams(n=2, temperature=0.8, max_tokens=6, seed=1),
             SamplingParams(max_tokens=7, stop=("\n",)), SamplingParams(max_tokens=4, add_bos=False)]
    params = [mixed[i % len(mixed)] for i in range(len(prompts))]
    results = engine(tiny, batch_size=2).generate(prompts, params)
    greedy = [i for i, p in enumerate(params) if p.temperature == 0]
    alone = one_at_a_time(tiny, [prompts[i] for i in greedy], [params[i] for i in greedy])
    assert [results[i] for i in greedy] == alone
    for prompt, p, result in zip(prompts, params, results, strict=True):
        assert len(result.completions) == p.n
        assert all(c.prompt_tokens == len(tokenizer(prompt)["input_ids"])
                   and 1 <= (c.completion_tokens or 0) <= p.max_tokens for c in result.completions)


def test_an_empty_prompt_fails_alone(tiny: Path, prompts: list[str]):
    empty, other = engine(tiny).generate(["", prompts[0]], SamplingParams(max_tokens=2))
    assert (empty.error, empty.transient, other.ok) == (EMPTY_PROMPT, False, True)


def test_batches_group_by_options_cap_rows_and_sort_by_length():
    greedy, hot = SamplingParams(max_tokens=4), SamplingParams(temperature=0.5, max_tokens=4)
    rows = [Row(0, greedy, (1, 2, 3)), Row(1, hot, (1,)), Row(2, SamplingParams(max_tokens=4, temperature=0.0,
                                                                                    top_p=0.5), (1,)),
            Row(3, greedy, (1, 2))]
    batches = [[row.prompt for row in batch] for batch in plan_batches(rows, batch_size=2)]
    assert batches == [[2, 3], [0], [1]]  # greedy ignores top_p; shorter rows first


def test_a_token_budget_makes_long_prompts_run_in_small_batches():
    params = SamplingParams(max_tokens=10)
    rows = [Row(i, params, tuple(range(length))) for i, length in enumerate((10, 10, 10, 40, 40, 90))]
    # 3 x (10 + 10) = 60 positions fit in 100; a 40-token row makes 2 x 50; 90 + 10 alone.
    batches = [[row.prompt for row in batch] for batch in plan_batches(rows, batch_size=8, token_budget=100)]
    assert batches == [[0, 1, 2], [3, 4], [5]]
    assert len(list(plan_batches(rows, batch_size=8, token_budget=None))) == 1


def test_generated_length_stops_at_the_first_eos():
    assert generated_length([5, 6, 0, 1, 1], frozenset({0})) == (3, True)  # the padding after EOS not counted
    assert generated_length([5, 6, 7], frozenset({0})) == (3, False)


def test_a_tokenizer_without_pad_pads_left_with_eos(tiny: Path):
    from transformers import AutoTokenizer

    unpadded = AutoTokenizer.from_pretrained(tiny)
    unpadded.pad_token = None
    prepare_tokenizer(unpadded)
    assert (unpadded.pad_token_id, unpadded.padding_side) == (unpadded.eos_token_id, "left")
