"""The judge stage's published options, with a test-double engine, no Spark:
generation.judge.decision (how an answer is read) and generation.judge.template."""

from __future__ import annotations

from dataclasses import replace

from jobs.core.config import load_config
from jobs.stages.generation import GenerationSettings
from jobs.stages.judge import judge_rows
from schemas.outcome import Reason
from tests.fake_engine import FakeEngine
from udfs.llm import EngineSettings, SamplingParams
from udfs.prompts import load_judge, load_prompts

PROMPTS = load_prompts()
SEED = {"function_id": "a" * 64, "code": 'def inc(n):\n    """Add one to n."""\n    return n + 1\n'}


def settings(profiles: list[str]) -> GenerationSettings:
    cfg = load_config(None, profiles=profiles)
    judge = cfg.generation.judge
    prompts = replace(PROMPTS, judge=load_judge(judge.template))
    return GenerationSettings(EngineSettings.from_settings(cfg.llm), group_size=8, tasks=1, gpu_profile=None,
                              sampling=judge, prompts=prompts)


def answering(text: str) -> FakeEngine:
    def responder(prompt: str, params: SamplingParams) -> str:
        return text

    return FakeEngine(responder=responder)


def test_yes_i_know_is_yes_by_first_word_and_no_by_the_published_count():
    ours = judge_rows([SEED], answering(" Yes, I know"), settings([]))
    published = judge_rows([SEED], answering(" Yes, I know"), settings(["published"]))
    assert ours[0]["good"] is True and ours[0].get("reject_reason") is None
    assert published[0]["good"] is False and published[0]["reject_reason"] == Reason.JUDGE_NO
    assert published[0]["reject_detail"].endswith('(answer counted: 1 "yes", 1 "no")')


def test_nope_is_unparseable_by_first_word_and_no_by_count():
    assert judge_rows([SEED], answering(" Nope"), settings([]))[0]["reject_reason"] == Reason.JUDGE_UNPARSEABLE
    assert judge_rows([SEED], answering(" Nope"), settings(["published"]))[0]["reject_reason"] == Reason.JUDGE_NO


def test_the_published_profile_asks_five_tokens_through_the_issue_prompt():
    engine = answering(" Yes")
    [row] = judge_rows([SEED], engine, settings(["published"]))
    published = load_judge("judge_published.yaml")
    assert row["good"] is True
    assert row["prompt_version"] == published.version != PROMPTS.judge.version
    assert '"max_tokens": 5' in row["sampling"]
    [prompt] = engine.prompts
    assert prompt.startswith("<issue_start>username_0: ")
    assert prompt.endswith(f"<issue_comment>username_1: {published.reply.strip()}")
