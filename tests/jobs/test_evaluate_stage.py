"""`selfalign evaluate` on local Spark: the first tasks of each set, reference and wrong code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.stages import evaluate
from schemas import EVAL_RESULTS, EVAL_SAMPLES, RUNS
from tests.lakes import new_context
from tests.paths import BENCHMARKS

pytestmark = pytest.mark.spark

if not (BENCHMARKS / "mbpp.jsonl").is_file():
    pytest.skip(f"benchmark files not found in {BENCHMARKS} (set SELFALIGN_BENCHMARKS_DIR)",
                allow_module_level=True)

SETS = ("humaneval", "humanevalplus", "mbpp", "mbppplus")
COLUMNS = {("humaneval", "base"), ("humanevalplus", "base"), ("humanevalplus", "plus"),
           ("mbpp", "base"), ("mbppplus", "base"), ("mbppplus", "plus")}


def make(lake: Path, *overrides: str) -> Context:
    return new_context(lake, f"benchmarks.dir={BENCHMARKS}", *overrides)


@pytest.fixture(scope="module")
def reference(spark, tmp_path_factory):
    lake = tmp_path_factory.mktemp("eval_ref") / "lake"
    overrides = ("evaluate.reference=true", "evaluate.limit=3")
    ctx = make(lake, *overrides)
    return ctx, evaluate.run_evaluation(ctx), lake, overrides


def test_reference_solutions_score_100_on_every_set(reference):
    _, outcome, _, _ = reference
    assert outcome.failures == [] and outcome.missing == {}
    figures = {(r["benchmark"], r["variant"]): r for r in outcome.results}
    assert set(figures) == COLUMNS
    for row in figures.values():
        assert (row["decoding"], row["k"], row["pass_at_k"], row["n_tasks"]) == ("reference", 1, 1.0, 3)
    assert "100.0" in evaluate.report(outcome)


def test_tables_hold_every_sample_and_figure(reference):
    ctx, outcome, _, _ = reference
    samples = ctx.lake.read(EVAL_SAMPLES).collect()
    assert len(samples) == 12
    # EvalPlus's task set: MBPP+'s first three tasks, with MBPP's own tests.
    assert {(r["benchmark"], r["task_id"]) for r in samples if r["benchmark"] == "mbpp"} == {
        ("mbpp", "Mbpp/2"), ("mbpp", "Mbpp/3"), ("mbpp", "Mbpp/4")}
    for row in samples:
        assert row["passed"] and row["base_passed"] and row["status"] == "pass"
        assert row["model"] == "reference" and row["run_id"] == ctx.run_id
        assert (row["plus_passed"] is None) == (row["benchmark"] in ("humaneval", "mbpp"))
    results = ctx.lake.read(EVAL_RESULTS).where(F.col("run_id") == ctx.run_id).collect()
    assert {(r["benchmark"], r["variant"]) for r in results} == COLUMNS
    assert all(r["eval_id"] == outcome.eval_id for r in results)
    runs = ctx.lake.read(RUNS).where(F.col("stage") == "evaluate").select("status").collect()
    assert "succeeded" in {r["status"] for r in runs}


def test_running_the_same_evaluation_again_reruns_nothing(reference):
    _, first, lake, overrides = reference
    ctx = make(lake, *overrides)
    again = evaluate.run_evaluation(ctx)
    assert again.eval_id == first.eval_id and again.summary.rows_in == 0
    assert ctx.lake.read(EVAL_SAMPLES).count() == 12
    assert sorted(json.dumps(r, sort_keys=True) for r in again.results) == sorted(
        json.dumps(r, sort_keys=True) for r in first.results)


def test_wrong_code_scores_zero_greedy_and_sampled(spark, tmp_path):
    ctx = make(tmp_path / "lake", "llm.engine=python:tests.eval_engines:WrongEngine",
               "evaluate.limit=2", "evaluate.samples=2", "evaluate.k=[1, 2, 10]")
    outcome = evaluate.run_evaluation(ctx)
    assert outcome.results and all(r["pass_at_k"] == 0.0 for r in outcome.results)
    ks = {(r["decoding"], r["k"]) for r in outcome.results}
    assert ks == {("greedy", 1), ("sampled", 1), ("sampled", 2)}  # k=10 needs 10 samples
    samples = ctx.lake.read(EVAL_SAMPLES).collect()
    assert len(samples) == 4 * 2 * (1 + 2)
    assert not any(r["passed"] or r["base_passed"] for r in samples)
    assert {r["status"] for r in samples} == {"fail"}
    sampled = [r for r in samples if r["decoding"] == "sampled"]
    assert {json.loads(r["sampling"])["temperature"] for r in sampled} == {0.8}
    assert all(r["completion"] for r in samples)
    plus_detail = next(r["detail"] for r in samples if r["benchmark"] == "humanevalplus")
    assert "got None" in plus_detail


def test_instruct_format_prompts_through_the_sft_template_and_stops_at_the_fence(spark, tmp_path):
    engine = "llm.engine=python:tests.eval_engines:InstructReferenceEngine"
    instruct = evaluate.run_evaluation(make(tmp_path / "instruct", engine, "evaluate.limit=2",
                                            "evaluate.prompt_format=instruct"))
    # The engine answers the reference only to instruct prompts: all pass, once the
    # chatter after the closing fence is cut.
    assert {(r["benchmark"], r["variant"]): r["pass_at_k"] for r in instruct.results} == {
        column: 1.0 for column in COLUMNS}
    completion = evaluate.run_evaluation(make(tmp_path / "completion", engine, "evaluate.limit=1"))
    assert all(r["pass_at_k"] == 0.0 for r in completion.results)
    assert instruct.eval_id != completion.eval_id
