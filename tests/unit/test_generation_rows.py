"""The generation stages' row logic with the test-double engine, no Spark."""

from __future__ import annotations

import json

import pytest

from jobs.core.config import load_config
from jobs.stages.concepts import concept_rows
from jobs.stages.generation import GenerationSettings
from jobs.stages.instruct import instruction_id, instruction_rows
from jobs.stages.judge import judge_rows
from jobs.stages.respond import response_id, response_rows
from schemas.outcome import Reason
from tests.stage_engine import StageEngine
from udfs.llm import EngineSettings
from udfs.prompts import load_prompts

CFG = load_config(None, ["generation.respond.n=3"])
PROMPTS = load_prompts()


def settings(stage: str, seed: int = 0) -> GenerationSettings:
    """What the stage's tasks get: its sampling section, the prompts and run.seed."""
    return GenerationSettings(EngineSettings.from_settings(CFG.llm), group_size=8, tasks=1,
                              gpu_profile=None, sampling=getattr(CFG.generation, stage),
                              prompts=PROMPTS, seed=seed)


def fn(name: str, doc: str) -> dict:
    return {"function_id": f"{name:0<64}"[:64].replace("_", "0"), "code": f'def {name}(x):\n    """{doc}"""\n    return x\n'}


@pytest.fixture
def engine() -> StageEngine:
    return StageEngine(CFG.llm)


def test_judge_yes_no_and_unparseable(engine):
    records = [fn("good", "Return x."), fn("bad", "judged_bad"), fn("odd", "judged_weird")]
    rows = {r["function_id"]: r for r in judge_rows(records, engine, settings("judge"))}
    good, bad, odd = (rows[r["function_id"]] for r in records)
    assert good["good"] is True and good.get("reject_reason") is None
    assert bad["good"] is False and bad["reject_reason"] == Reason.JUDGE_NO
    assert odd["good"] is None and odd["reject_reason"] == Reason.JUDGE_UNPARSEABLE
    assert odd["raw_output"] == " Perhaps"
    assert engine.calls == 1  # one engine call for the whole group
    assert json.loads(good["sampling"])["temperature"] == 0.0
    assert good["prompt_version"] == "judge-v2" and good["model"] == CFG.llm.model


def test_concepts_then_instruction_rows(engine):
    seed = {"seed_id": "a" * 64, "code": fn("f", "Return x.")["code"]}
    [concepts] = concept_rows([seed], engine, settings("concepts"))
    # The double's answer: two fixed concepts and the seed's own name.
    assert concepts["concepts"] == ["arithmetic", "function definition", "f"]
    [instruction] = instruction_rows([{"seed_id": seed["seed_id"], "concepts": concepts["concepts"]}],
                                     engine, settings("instruct"))
    assert instruction["instruction"].startswith("Write a function `double(x)`")
    assert "(concepts: arithmetic, function definition, f)" in instruction["instruction"]
    assert instruction["instruction_id"] == instruction_id(seed["seed_id"], instruction["instruction"])
    assert instruction["category"] in PROMPTS.oss.categories
    assert instruction["difficulty"] in PROMPTS.oss.difficulties


def test_response_rows_samples_missing_parts_and_failures(engine):
    records = [
        {"instruction_id": "1" * 64, "instruction": "Write a function `double(x)` please."},
        {"instruction_id": "2" * 64, "instruction": "Write `double(x)`. no_tests_please"},
        {"instruction_id": "3" * 64, "instruction": "Write `double(x)`. flaky_here"},
    ]
    rows = response_rows(records, engine, settings("respond", seed=42))
    full = [r for r in rows if r["source_key"] == "1" * 64]
    assert [r["sample_index"] for r in full] == [0, 1, 2]
    assert [r["response_id"] for r in full] == [response_id("1" * 64, i) for i in range(3)]
    assert all("def double" in r["code"] and "assert double(2) == 4" in r["tests"] for r in full)
    partial = [r for r in rows if r["source_key"] == "2" * 64]
    assert {r["reject_reason"] for r in partial} == {Reason.RESPONSE_MISSING_PARTS}
    assert all(r["tests"] is None and r["missing"] == ["tests"] for r in partial)
    [flaky] = [r for r in rows if r["source_key"] == "3" * 64]
    assert flaky["retry_error"].startswith("timed out")
    assert json.loads(full[0]["sampling"])["n"] == 3
    seeds = {json.loads(r["sampling"])["seed"] for r in rows if r.get("sampling")}
    assert len(seeds) == 3  # one sampling seed per instruction


def test_the_judge_takes_the_majority_and_a_tie_is_no():
    from jobs.stages.judge import majority

    assert majority([True]) is True and majority([False]) is False
    assert majority([True, True, False]) is True
    assert majority([True, False]) is False  # a tie is No
    assert majority([True, None, False, None]) is False
    assert majority([None, True]) is True  # unreadable samples do not vote
    assert majority([None, None]) is None


def test_judge_samples_vote(engine):
    """With generation.judge.n = 3 the answers are counted: the stage engine answers
    Yes to every sample of a plain seed, No to every sample of a judged_bad one."""
    cfg = load_config(None, ["generation.judge.n=3", "generation.judge.temperature=0.7"])
    three = GenerationSettings(EngineSettings.from_settings(cfg.llm), group_size=8, tasks=1,
                               gpu_profile=None, sampling=cfg.generation.judge, prompts=PROMPTS)
    rows = judge_rows([fn("good", "Return x."), fn("bad", "judged_bad")], engine, three)
    assert [r["good"] for r in rows] == [True, False]
    assert rows[1]["reject_detail"].endswith("(0 Yes, 3 No of 3)")
    assert rows[0]["raw_output"].count("---") == 2
