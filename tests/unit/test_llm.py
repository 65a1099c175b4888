"""Engines behind udfs/llm: the openai engine against a real local HTTP server,
the test double loaded by dotted path, vLLM up to what runs without vllm."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from types import SimpleNamespace

import pytest

from jobs.core.config import load_config
from jobs.core.sections import LLMConfig
from tests.fake_engine import FakeEngine, FakeFailure, prompt_kind
from tests.llm_server import LLMServer
from tests.paths import REPO
from udfs.llm import (
    Engine,
    EngineError,
    EngineSettings,
    EngineUnavailable,
    Generation,
    NoEngine,
    SamplingParams,
    clear_engine_cache,
    get_engine,
    make_engine,
)
from udfs.llm import vllm as llm_vllm
from udfs.llm.base import CONSTANTS
from udfs.llm.openai import OpenAIEngine, request_body, retry_after_seconds

FAST = {"backoff_seconds": 0.01, "backoff_max_seconds": 0.05, "check_timeout_seconds": 2.0}


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    yield
    clear_engine_cache()


def openai_cfg(server: LLMServer, **overrides: object) -> EngineSettings:
    values = {"engine": "openai", "base_url": server.base_url, "model": "test-model", **FAST}
    return EngineSettings(**{**values, **overrides})  # type: ignore[arg-type]


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- interface and construction --------------------------------------------------------


def test_sampling_params_are_hashable_and_json_ready():
    params = SamplingParams(n=2, temperature=0.7, stop=["\n\n"], seed=3)  # type: ignore[arg-type]
    assert params.stop == ("\n\n",) and hash(params)
    assert params.as_dict() == {
        "n": 2, "temperature": 0.7, "top_p": 1.0, "max_tokens": 512, "stop": ["\n\n"], "seed": 3,
    }
    assert params.with_sample(1) == SamplingParams(n=1, temperature=0.7, stop=("\n\n",), seed=4)
    with pytest.raises(ValueError, match="n must be >= 1"):
        SamplingParams(n=0)


def test_add_bos_is_in_the_lineage_only_when_set():
    # Unset (the engine's default), the lineage and every id hashed from it stay as before.
    assert "add_bos" not in SamplingParams().as_dict()
    assert SamplingParams(add_bos=True).as_dict()["add_bos"] is True
    assert SamplingParams(add_bos=False).as_dict()["add_bos"] is False
    assert SamplingParams(add_bos=True).with_sample(2).add_bos is True


def test_the_openai_engine_refuses_a_bos_it_cannot_place(server):
    engine = make_engine(openai_cfg(server))
    with pytest.raises(EngineError, match=r"cannot place a BOS token \(evaluate\.add_bos\)") as caught:
        engine.generate(["p"], SamplingParams(add_bos=True))
    one_line(caught)
    assert server.requests == []  # refused before any request


def test_config_default_is_none_and_engine_names_are_validated():
    assert load_config().llm.engine == "none"
    cfg = load_config(None, ["llm.engine=python:tests.fake_engine:FakeEngine", "llm.api=chat"])
    assert cfg.llm.api == "chat"
    with pytest.raises(ValueError, match=r"llm\.engine"):
        load_config(None, ["llm.engine=vlm"])


def test_engine_settings_mirror_the_llm_config():
    """Every llm.* key and the derived seed reach the engines, with the same defaults (the
    cache key is all of them); the rest are the engines' constants."""
    assert {item.name for item in fields(EngineSettings)} - CONSTANTS == {*LLMConfig.model_fields, "seed"}
    assert EngineSettings.from_settings(LLMConfig()) == EngineSettings()
    cfg = load_config(None, ["llm.engine=openai", "llm.api=chat", "llm.max_model_len=4096"])
    settings = EngineSettings.from_settings(cfg.llm)
    assert (settings.engine, settings.api, settings.max_model_len) == ("openai", "chat", 4096)


@pytest.mark.parametrize(
    "module", ["udfs.llm", "udfs.llm.base", "udfs.llm.openai", "udfs.llm.vllm", "udfs.llm.registry"]
)
def test_each_module_imports_first_without_a_cycle_or_jobs(module):
    code = f"import sys, {module}; assert not [m for m in sys.modules if m.split('.')[0] == 'jobs']"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize(
    ("engine", "cls"),
    [("none", NoEngine), ("openai", OpenAIEngine), ("vllm", llm_vllm.VLLMEngine),
     ("python:tests.fake_engine:FakeEngine", FakeEngine)],
)
def test_make_engine_builds_each_kind_without_side_effects(engine, cls):
    built = make_engine(EngineSettings(engine=engine))
    assert type(built) is cls and isinstance(built, Engine)
    assert built.describe()["engine"] in {engine, "fake"}


def test_none_engine_says_how_to_configure_one():
    engine = make_engine(EngineSettings())
    with pytest.raises(EngineUnavailable) as exc:
        engine.check()
    assert one_line(exc).startswith("llm.engine is 'none': set llm.engine=openai with llm.base_url=")
    with pytest.raises(EngineUnavailable):
        engine.generate(["x"], SamplingParams())


@pytest.mark.parametrize(
    ("spec", "message"),
    [("python:tests.no_such_module:X", "cannot import module 'tests.no_such_module'"),
     ("python:tests.fake_engine:Nope", "has no class 'Nope'")],
)
def test_python_engine_path_errors_name_the_key(spec, message):
    with pytest.raises(EngineUnavailable, match=message) as exc:
        make_engine(EngineSettings(engine=spec))
    assert f"llm.engine '{spec}'" in one_line(exc)


def test_engine_cache_returns_one_engine_per_config():
    cfg = EngineSettings(engine="python:tests.fake_engine:FakeEngine")
    first = get_engine(cfg)
    assert get_engine(EngineSettings(engine="python:tests.fake_engine:FakeEngine")) is first
    assert get_engine(replace(cfg, model="other")) is not first


def test_vllm_cache_ignores_client_settings_and_keeps_one_model():
    cfg = EngineSettings(engine="vllm")
    first = get_engine(cfg)
    assert get_engine(replace(cfg, concurrency=3)) is first
    second = get_engine(replace(cfg, dtype="float16"))
    assert second is not first
    assert get_engine(cfg) is not first  # evicted: one model per process


# --- fake engine -----------------------------------------------------------------------


def test_fake_engine_answers_by_prompt_kind_and_honours_stop_and_n():
    engine = get_engine(EngineSettings(engine="python:tests.fake_engine:FakeEngine"))
    prompts = [
        "### Snippet\ndef f(): pass\n\n### Concepts\n",
        "### Concepts\nloops\n\n### Instruction\n",
        "### Instruction\nAdd.\n\n### Response\n",
        "Does the docstring match? Answer yes or no.\n",
    ]
    assert [prompt_kind(p) for p in prompts] == ["concepts", "instruct", "respond", "judge"]
    results = engine.generate(prompts, SamplingParams(n=2, stop=("[Tests]",)))
    assert all(r.ok and len(r.completions) == 2 for r in results)
    assert "def add_numbers" in results[2].texts[0] and "[Tests]" not in results[2].texts[0]
    assert results[3].texts == ["Yes", "Yes"]


def test_fake_engine_responder_is_pluggable_and_can_fail_a_prompt():
    def responder(prompt: str, params: SamplingParams) -> list[str]:
        if prompt == "bad":
            raise FakeFailure("boom", transient=False)
        return [prompt.upper()]

    engine = FakeEngine(EngineSettings(), responder=responder)
    good, bad = engine.generate(["ok", "bad"], SamplingParams())
    assert good.texts == ["OK"]
    assert bad == Generation.failed("boom", transient=False)
    assert engine.calls == 1 and engine.prompts == ["ok", "bad"]


# --- openai engine against the local server ---------------------------------------------


def test_completions_in_order_with_usage(server):
    engine = make_engine(openai_cfg(server, concurrency=4))
    engine.check()
    prompts = [f"p{i}" for i in range(10)]
    results = engine.generate(prompts, SamplingParams(max_tokens=8, stop=("\n",), seed=1))
    assert [r.texts for r in results] == [[f"p{i}#0"] for i in range(10)]
    first = results[0].completions[0]
    assert first.finish_reason == "stop" and first.prompt_tokens == 1 and first.completion_tokens == 1
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/completions"
    assert {body["max_tokens"], body["stop"][0], body["seed"], body["model"]} == {8, "\n", 1, "test-model"}
    assert "n" not in body  # left out at its default


def test_chat_api_sends_messages_and_reads_message_content(server):
    engine = make_engine(openai_cfg(server, api="chat"))
    [result] = engine.generate(["hello"], SamplingParams())
    assert result.texts == ["hello#0"]
    assert server.requests[-1].path == "/v1/chat/completions"
    assert server.requests[-1].body["messages"] == [{"role": "user", "content": "hello"}]


def test_n_samples_in_one_request(server):
    engine = make_engine(openai_cfg(server))
    [result] = engine.generate(["p"], SamplingParams(n=3, temperature=0.8))
    assert result.texts == ["p#0", "p#1", "p#2"]
    assert server.served == 1 and server.requests[0].body["n"] == 3


def test_n_falls_back_to_separate_seeded_requests_when_server_ignores_n(server):
    server.max_choices = 1
    engine = make_engine(openai_cfg(server))
    first, second = engine.generate(["a", "b"], SamplingParams(n=3, temperature=0.8, seed=10))
    assert len(first.completions) == 3 and len(second.completions) == 3
    seeds = sorted(r.body.get("seed") for r in server.requests if r.body["prompt"] == "a")
    assert len(set(seeds)) == len(seeds)  # distinct samples
    # Detected once: later prompts skip the n=3 request.
    before = server.served
    engine.generate(["c"], SamplingParams(n=3, seed=0))
    assert server.served - before == 3
    assert all(r.body.get("n", 1) == 1 for r in server.requests[before:])


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, None), (429, 0)])
def test_transient_statuses_are_retried_until_success(server, status, retry_after):
    server.fail_next(2, status=status, retry_after=retry_after)
    engine = make_engine(openai_cfg(server, max_retries=3))
    [result] = engine.generate(["p"], SamplingParams())
    assert result.ok and result.texts == ["p#0"]
    assert server.served == 3


def test_retry_after_is_honoured(server):
    server.fail_next(1, status=429, retry_after=0.3)
    engine = make_engine(openai_cfg(server, backoff_max_seconds=5.0))
    start = time.monotonic()
    [result] = engine.generate(["p"], SamplingParams())
    assert result.ok and time.monotonic() - start >= 0.3


def test_exhausted_retries_become_a_transient_per_prompt_error(server):
    server.fail_next(100, status=500, message="kv cache full")
    engine = make_engine(openai_cfg(server, max_retries=2, concurrency=2))
    results = engine.generate(["a", "b"], SamplingParams())
    assert [r.ok for r in results] == [False, False]
    assert results[0].transient and results[0].completions == ()
    assert results[0].error == "HTTP 500: kv cache full (gave up after 3 attempts)"


def test_timeout_is_retried_then_reported_per_prompt(server):
    server.delay_seconds = 1.0
    engine = make_engine(openai_cfg(server, timeout_seconds=0.2, max_retries=1))
    [result] = engine.generate(["slow"], SamplingParams())
    assert not result.ok and result.transient
    assert result.error == "timed out after 0.2s (gave up after 2 attempts)"
    assert len(server.requests) == 2


def test_one_failing_prompt_does_not_fail_the_batch(server):
    def responder(prompt: str, params: dict) -> list[str]:
        return [] if prompt == "empty" else [prompt]

    server.responder = responder
    engine = make_engine(openai_cfg(server, max_retries=0))
    ok, failed = engine.generate(["fine", "empty"], SamplingParams())
    assert ok.texts == ["fine"] and not failed.ok and "no choices" in (failed.error or "")


def test_400_is_a_clear_non_retried_per_prompt_error(server):
    server.reject_with(400, "This model's maximum context length is 16384 tokens.")
    engine = make_engine(openai_cfg(server, max_retries=3))
    [result] = engine.generate(["long"], SamplingParams())
    assert not result.ok and not result.transient
    assert result.error == (
        f"HTTP 400 from {server.base_url}/completions: "
        "This model's maximum context length is 16384 tokens."
    )
    assert server.served == 1


@pytest.mark.parametrize(("status", "key"), [(401, "llm.api_key_env"), (404, "llm.model")])
def test_wrong_key_or_model_fails_the_batch_at_once(server, status, key):
    server.reject_with(status, "nope")
    engine = make_engine(openai_cfg(server, max_retries=3))
    with pytest.raises(EngineError) as exc:
        engine.generate(["a", "b", "c"], SamplingParams())
    assert key in one_line(exc) and "nope" in str(exc.value)
    assert server.served <= 3  # no retries


def test_concurrency_is_bounded(server):
    server.delay_seconds = 0.05
    engine = make_engine(openai_cfg(server, concurrency=3))
    results = engine.generate([f"p{i}" for i in range(12)], SamplingParams())
    assert all(r.ok for r in results)
    assert server.max_in_flight == 3


def test_api_key_is_sent_from_the_named_env_var(server, monkeypatch):
    monkeypatch.setenv("SELFALIGN_TEST_KEY", "sk-test-123")
    engine = make_engine(openai_cfg(server, api_key_env="SELFALIGN_TEST_KEY"))
    engine.generate(["p"], SamplingParams())
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in str(engine.describe())


def test_no_key_no_authorization_header(server, monkeypatch):
    monkeypatch.delenv("SELFALIGN_TEST_KEY", raising=False)
    make_engine(openai_cfg(server, api_key_env="SELFALIGN_TEST_KEY")).generate(["p"], SamplingParams())
    assert "authorization" not in server.requests[0].headers


def test_check_on_a_down_endpoint_is_one_line_naming_url_and_keys():
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = make_engine(EngineSettings(engine="openai", base_url=url, check_timeout_seconds=2.0))
    with pytest.raises(EngineUnavailable) as exc:
        engine.check()
    message = one_line(exc)
    assert message.startswith(f"llm.engine=openai cannot reach {url}/models")
    assert "llm.base_url" in message


def test_check_names_the_served_models_when_llm_model_is_wrong(server):
    with pytest.raises(EngineUnavailable, match=r"llm\.model 'nope' is not served .* test-model"):
        make_engine(openai_cfg(server, model="nope")).check()


def test_empty_model_resolves_to_the_served_one(server):
    engine = make_engine(openai_cfg(server, model=""))
    engine.generate(["p"], SamplingParams())
    assert server.requests[0].body["model"] == "test-model"
    assert engine.describe()["model"] == "test-model"


def test_request_body_and_retry_after_helpers():
    body = request_body("completions", "m", "p", SamplingParams())
    assert set(body) == {"model", "prompt", "temperature", "top_p", "max_tokens"}
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None


# --- vllm: what runs without vllm -------------------------------------------------------


def test_vllm_check_says_install_the_gpu_extra_when_vllm_is_absent(monkeypatch):
    real_find_spec = llm_vllm.importlib.util.find_spec
    monkeypatch.setattr(
        llm_vllm.importlib.util, "find_spec",
        lambda name, *a: None if name == "vllm" else real_find_spec(name, *a),
    )
    engine = make_engine(EngineSettings(engine="vllm"))
    with pytest.raises(EngineUnavailable) as exc:
        engine.check()
    assert one_line(exc).startswith("llm.engine is 'vllm' but vllm is not installed: pip install 'selfalign[gpu]'")
    with pytest.raises(EngineUnavailable):
        engine.generate(["p"], SamplingParams())  # loading checks first


def test_vllm_check_without_cuda(monkeypatch):
    monkeypatch.setattr(llm_vllm.importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(llm_vllm, "_cuda_available", lambda: False)
    with pytest.raises(EngineUnavailable, match="no CUDA GPU"):
        make_engine(EngineSettings(engine="vllm")).check()


def test_vllm_parameter_mapping():
    params = SamplingParams(n=4, temperature=0.7, top_p=0.95, max_tokens=256, stop=("\n###",), seed=5)
    assert llm_vllm.vllm_sampling_kwargs(params) == {
        "n": 4, "temperature": 0.7, "top_p": 0.95, "max_tokens": 256, "stop": ["\n###"], "seed": 5,
    }
    cfg = EngineSettings(engine="vllm", model="m", dtype="float16", tensor_parallel_size=2, seed=7)
    assert llm_vllm.llm_kwargs(cfg) == {
        "model": "m", "dtype": "float16", "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9, "seed": 7,
    }
    assert llm_vllm.llm_kwargs(replace(cfg, max_model_len=4096))["max_model_len"] == 4096


def test_vllm_output_mapping_from_plain_stand_ins():
    # The attributes of vllm.RequestOutput / CompletionOutput the engine reads.
    output = SimpleNamespace(
        prompt_token_ids=[1, 2, 3],
        outputs=[
            SimpleNamespace(index=1, text="b", finish_reason="length", token_ids=[7, 8]),
            SimpleNamespace(index=0, text="a", finish_reason="stop", token_ids=[9]),
        ],
    )
    first, second = llm_vllm.to_completions(output)
    assert (first.text, first.finish_reason, first.prompt_tokens, first.completion_tokens) == ("a", "stop", 3, 1)
    assert (second.text, second.finish_reason, second.completion_tokens) == ("b", "length", 2)


def test_vllm_generate_with_a_stand_in_llm_skips_too_long_prompts(monkeypatch):
    """The batch path with a stand-in for the loaded vllm.LLM (seam: VLLMEngine._llm)."""
    calls: list[tuple[list[str], list[dict]]] = []

    class StandInLLM:
        llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=4))

        def get_tokenizer(self):
            return SimpleNamespace(encode=lambda text: text.split())

        def generate(self, prompts, params, use_tqdm):
            calls.append((prompts, params))
            return [SimpleNamespace(prompt_token_ids=p.split(), outputs=[
                SimpleNamespace(index=0, text=p.upper(), finish_reason="stop", token_ids=[1])])
                for p in prompts]

    monkeypatch.setitem(__import__("sys").modules, "vllm", SimpleNamespace(SamplingParams=dict))
    engine = llm_vllm.VLLMEngine(EngineSettings(engine="vllm"))
    engine._llm = StandInLLM()
    short, long_, other = engine.generate(["a b", "a b c d e", "c"], SamplingParams(seed=1))
    assert short.texts == ["A B"] and other.texts == ["C"]
    assert not long_.ok and not long_.transient and "5 tokens" in (long_.error or "")
    assert len(calls) == 1 and calls[0][0] == ["a b", "c"]  # one call for the whole batch
    assert calls[0][1][0]["seed"] == 1


def test_vllm_is_checked_on_the_driver_only_in_local_mode(monkeypatch):
    """On a cluster the driver may be a CPU node without vllm: the tasks check it where
    the model loads. The local session's driver is its executor, so it checks at start."""
    from jobs.core.failures import StageError
    from jobs.stages.generation import require_engine

    monkeypatch.setattr(llm_vllm, "_cuda_available", lambda: False)
    cfg = load_config(None, ["llm.engine=vllm", "llm.model=some/model"])
    for marker in ("DATABRICKS_RUNTIME_VERSION", "PYSPARK_GATEWAY_PORT", "SPARK_CONNECT_MODE_ENABLED",
                   "SPARK_REMOTE"):
        monkeypatch.delenv(marker, raising=False)
    with pytest.raises(StageError, match=r"judge: llm\.engine is 'vllm' but"):
        require_engine(cfg, "judge")
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    require_engine(cfg, "judge")  # no error: the executors check
