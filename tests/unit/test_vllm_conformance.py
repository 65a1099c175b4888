"""The vllm engine's calls against the pinned vLLM's real classes, without a GPU: the
constructor arguments LLM takes, the SamplingParams it builds, the methods and fields it
reads from LLM and RequestOutput. An API change in vLLM fails here, not on a cluster.

`make test` installs the `gpu` extra (vllm==0.11.0, on the train extra's torch) for this.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

vllm = pytest.importorskip("vllm", reason="the gpu extra (vllm) is not installed: make test installs it")

from udfs.llm.base import EngineSettings, SamplingParams  # noqa: E402
from udfs.llm.vllm import VLLMEngine, llm_kwargs, to_completions, vllm_sampling_kwargs  # noqa: E402


def engine_settings() -> EngineSettings:
    return EngineSettings(engine="vllm", model="bigcode/starcoder2-15b", max_model_len=4096)


def test_every_llm_keyword_is_an_engine_argument_of_the_type_vllm_expects():
    from vllm.engine.arg_utils import EngineArgs

    kwargs = llm_kwargs(engine_settings())
    engine_fields = {f.name: f for f in dataclasses.fields(EngineArgs)}
    explicit = inspect.signature(vllm.LLM.__init__).parameters
    for name in kwargs:
        assert name in explicit or name in engine_fields, f"vllm.LLM has no argument {name!r}"
    # EngineArgs is what LLM builds from them: it must accept every one as given.
    args = EngineArgs(**kwargs)
    assert (args.model, args.max_model_len, args.seed) == (kwargs["model"], 4096, kwargs["seed"])


def test_the_cache_fields_are_ones_vllm_loads_with():
    from vllm.engine.arg_utils import EngineArgs

    names = {f.name for f in dataclasses.fields(EngineArgs)}
    assert set(VLLMEngine.CACHE_FIELDS) <= names


def test_sampling_params_build_with_every_field_we_set():
    ours = SamplingParams(n=10, temperature=0.7, top_p=0.95, max_tokens=1536, stop=("```\n", "</s>"), seed=7)
    real = vllm.SamplingParams(**vllm_sampling_kwargs(ours))
    assert (real.n, real.temperature, real.top_p, real.max_tokens, real.seed) == (10, 0.7, 0.95, 1536, 7)
    assert list(real.stop) == ["```\n", "</s>"]


def test_greedy_sampling_is_accepted_as_vllm_spells_it():
    real = vllm.SamplingParams(**vllm_sampling_kwargs(SamplingParams(n=1, temperature=0.0, max_tokens=512)))
    assert real.temperature == 0.0 and real.n == 1


def test_generate_and_the_tokenizer_are_called_as_llm_defines_them():
    generate = inspect.signature(vllm.LLM.generate).parameters
    assert list(generate)[1:3] == ["prompts", "sampling_params"]
    assert "use_tqdm" in generate
    assert callable(vllm.LLM.get_tokenizer)


def test_the_context_length_is_where_the_engine_reads_it():
    from vllm.config import ModelConfig

    assert "max_model_len" in {f.name for f in dataclasses.fields(ModelConfig)}


def test_request_outputs_become_completions():
    from vllm.outputs import CompletionOutput, RequestOutput

    samples = [CompletionOutput(index=1, text="second", token_ids=[5, 6, 7], cumulative_logprob=None,
                                logprobs=None, finish_reason="length"),
               CompletionOutput(index=0, text="first", token_ids=[4], cumulative_logprob=None,
                                logprobs=None, finish_reason="stop")]
    output = RequestOutput(request_id="r", prompt="p", prompt_token_ids=[1, 2], prompt_logprobs=None,
                           outputs=samples, finished=True)
    completions = to_completions(output)
    assert [(c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in completions] == [
        ("first", "stop", 2, 1), ("second", "length", 2, 3)]
