"""execute -> select -> export on local Spark, over planted instructions and responses."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from jobs.cli import main as cli_main
from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.runner import pending_of, run
from jobs.stages import execute
from jobs.stages import select as select_stage
from jobs.stages.export import EXPORT_FIELDS, export_dataset, split_of
from schemas import (
    ERRORS,
    EXECUTIONS,
    FUNCTIONS,
    INSTRUCTIONS,
    PROGRESS,
    REJECTS,
    RESPONSES,
    RUNS,
    SFT,
)
from schemas.outcome import Reason
from tests.lakes import new_context
from udfs.parse import MARKERS, parse_response
from udfs.sandbox import Limits

OVERRIDES = ("sandbox.wall_seconds=4.0", "sandbox.cpu_seconds=2", "sandbox.parallelism=4",
             "export.validation_fraction=0.5")
MADE_BY = ("starcoder2-15b", "respond-v1", '{"n": 10, "temperature": 0.7}', "test")
INSTRUCT_BY = ("starcoder2-15b", "instruct-v1", "{}", "test")

PASS_TESTS = "assert {name}(2) == {value}\nassert {name}(0) == 0"


def passing(name: str, factor: int) -> tuple[str, str]:
    return (f"def {name}(x):\n    return x * {factor}",
            PASS_TESTS.format(name=name, value=2 * factor))


FAILING = ("def half(x):\n    return x // 3", "assert half(4) == 2")
LOOPING = ("def spin(x):\n    while True:\n        pass", "assert spin(1) is None")
CRASHING = ("import os, signal\n\ndef die(x):\n    os.kill(os.getpid(), signal.SIGKILL)", "assert die(1) is None")
HOGGING = ("def hog(x):\n    return bytearray(10 ** 11)", "assert hog(1)")

TEXT = {
    "three": "Write a Python function that doubles an integer and returns the result; explain the "
             "edge cases for zero and negative numbers.",
    "mixed": "Implement an integer halving helper using floor division, with tests for even inputs.",
    "fail": "Create a routine that never finishes unless interrupted, to exercise sandbox limits.",
    "dup_a": "Given a list of strings, return the longest one.  Ties go to the first.",
    "dup_b": "Given a list of strings, return the longest one.\nTies go to the first.",
    "near_a": "Design a class that parses ISO 8601 date strings into year, month and day integers, "
              "rejecting malformed input with a ValueError and supporting leap years correctly.",
    "near_b": "Design a class that parses ISO 8601 date strings into year, month and day integers, "
              "rejecting malformed input with a ValueError and supporting leap years properly.",
    "same_resp": "Compute a triple of a number without using the multiplication sign anywhere.",
    "missing": "Summarise a CSV file's columns by their most frequent value per column.",
}
IDS = {name: f"i{index:02d}-{name}" for index, name in enumerate(TEXT)}
# instruction -> responses (code, tests); the mixed one's passing response is repeated
# word for word by same_resp, so its chosen response is a duplicate.
PROGRAMS = {
    "three": [passing("double", 2), passing("twice", 2), passing("dbl", 2)],
    "mixed": [FAILING, passing("halve", 1)],
    "fail": [FAILING, LOOPING, CRASHING, HOGGING],
    "dup_a": [passing("longest", 3)],
    "dup_b": [passing("longest_b", 4)],
    "near_a": [passing("parse_date", 5)],
    "near_b": [passing("parse_iso", 6)],
    "same_resp": [passing("halve", 1)],
    "missing": [],
}


def response_text(code: str, tests: str, note: str) -> str:
    return (f"I reason about it ({note}).\n\n## Implementation\n\n```python\n{code}\n```\n\n"
            f"## Explanation\n\nIt does what was asked.\n\n## Tests\n\n```python\n{tests}\n```\n")


def response_rows() -> list[tuple]:
    rows = []
    for name, programs in PROGRAMS.items():
        iid = IDS[name]
        texts = [response_text(code, tests, "same" if name in ("mixed", "same_resp") else f"{name} {k}")
                 for k, (code, tests) in enumerate(programs)]
        if name == "missing":
            texts = ["Only prose, no code.\n\n## Explanation\n\nNothing to run."]
        for index, text in enumerate(texts):
            parsed = parse_response(text)
            rid = hashlib.sha256(f"{iid}#{index}".encode()).hexdigest()
            rows.append((rid, iid, index, text, parsed.code or None, parsed.tests or None,
                         list(parsed.missing), "stop", 100, *MADE_BY))
    return rows


def put(ctx: Context, spec, rows) -> None:
    # A plain append (rows unique by construction): cheaper than insert_new's MERGE.
    ctx.lake.append(spec, ctx.spark.createDataFrame(rows, spec.schema))


def plant(ctx: Context) -> None:
    """The module's source functions, instructions, responses and respond progress.

    (That the choices do not depend on insertion order is tested over the whole DAG, on
    reversed input, by tests/e2e/test_dag.py.)"""
    seeds = {name: f"seed-{name}" for name in TEXT}
    put(ctx, FUNCTIONS, [(sid, "f", "def f(x)", "Doc.", "def f(x): return x", "", 1, 1, True,
                          "ab" * 20, f"acme/{name}", f"{name}.py",
                          ["MIT"] if k % 2 else ["Apache-2.0", "MIT"], 1, "t")
                         for k, (name, sid) in enumerate(seeds.items())])
    put(ctx, INSTRUCTIONS, [(IDS[name], seeds[name], "function", "easy", ["loops"], text,
                             *INSTRUCT_BY) for name, text in TEXT.items()])
    put(ctx, RESPONSES, response_rows())
    put(ctx, PROGRESS, [("respond", iid, "t") for iid in IDS.values()])


def make(root: Path, *overrides: str) -> Context:
    return new_context(root, *OVERRIDES, *overrides)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sft")
    ctx = make(tmp / "lake")
    plant(ctx)
    out = {"jsonl": tmp / "jsonl", "parquet": tmp / "parquet"}
    # As an operator runs it: the command line, export included as the DAG's last step.
    settings = [f"lake.root={tmp / 'lake'}", *OVERRIDES, f"export.out={out['jsonl']}"]
    with pytest.raises(SystemExit) as done:
        cli_main(["run", "--stages", "execute,select,export", "--no-status",
                  *[arg for setting in settings for arg in ("--set", setting)]])
    assert done.value.code == 0
    ran = {r["stage"]: r for r in ctx.lake.read(RUNS).where(F.col("status") == "succeeded").collect()}
    assert set(ran) == {"execute", "select", "export"}
    infos = {"jsonl": json.loads((out["jsonl"] / "dataset_info.json").read_text(encoding="utf-8")),
             "parquet": export_dataset(ctx, "parquet", out["parquet"])}
    return ctx, ran, out, infos, tmp


def rejects(ctx: Context, stage: str) -> dict[str, tuple[str, str]]:
    rows = ctx.lake.read(REJECTS).where(F.col("stage") == stage).collect()
    return {r["item_id"]: (r["reason"], r["detail"]) for r in rows}


def statuses(ctx: Context) -> dict[str, list[str]]:
    rows = ctx.lake.read(EXECUTIONS).groupBy("instruction_id").agg(
        F.sort_array(F.collect_list("status")).alias("s")).collect()
    return {r["instruction_id"]: r["s"] for r in rows}


# --- execute ---------------------------------------------------------------------------------

@pytest.mark.spark
def test_execute_judges_every_runnable_response(lake):
    ctx, ran, *_ = lake
    assert ran["execute"].rows_in == 14  # the missing-parts response is not runnable
    # The programs' CPU time, summed into the run's row; execute calls no model.
    assert ran["execute"]["cpu_seconds"] > 0 and ran["execute"]["tokens_out"] == 0
    assert statuses(ctx) == {
        IDS["three"]: ["pass"] * 3, IDS["mixed"]: ["fail", "pass"],
        IDS["fail"]: ["crash", "fail", "memory", "timeout"],
        **{IDS[n]: ["pass"] for n in ("dup_a", "dup_b", "near_a", "near_b", "same_resp")},
    }
    row = ctx.lake.read(EXECUTIONS).where(F.col("status") == "pass").first()
    assert row["passed"] and row["exit_code"] == 0 and row["isolation"] in ("bwrap+cgroup", "bwrap", "netns", "process")
    assert row["run_id"] == ran["execute"]["run_id"] and row["duration_s"] > 0
    reasons = sorted(reason for reason, _ in rejects(ctx, "execute").values())
    assert reasons == [Reason.EXECUTION_CRASH, Reason.EXECUTION_FAIL, Reason.EXECUTION_FAIL, Reason.EXECUTION_MEMORY,
                       Reason.EXECUTION_TIMEOUT]
    assert ctx.lake.read(ERRORS).where(F.col("stage") == "execute").count() == 0


@pytest.mark.spark
def test_a_refused_isolation_level_stops_the_stage(make_ctx, monkeypatch):
    from udfs.sandbox import probe

    monkeypatch.setattr(probe, "available_levels", lambda cgroup_parent=None: ("process",))
    ctx = make_ctx("sandbox.isolation=bwrap")
    with pytest.raises(StageError, match=r"execute: sandbox: isolation 'bwrap' is required.*allow_weaker"):
        run(execute.STAGE, ctx)
    assert not ctx.lake.exists(EXECUTIONS)


def test_execution_rows_run_in_parallel_and_sandbox_errors_are_retries(monkeypatch):
    plan = execute.SandboxPlan(Limits(wall_seconds=10.0, cpu_seconds=5), "auto", False, 3)
    records = [{"response_id": f"r{k}", "instruction_id": "i", "code": code, "tests": tests}
               for k, (code, tests) in enumerate([passing("a", 1), FAILING, passing("b", 2)])]
    rows = {r["response_id"]: r for r in execute.execution_rows(records, plan)}
    assert {k: r["status"] for k, r in rows.items()} == {"r0": "pass", "r1": "fail", "r2": "pass"}
    assert rows["r1"]["reject_reason"] == Reason.EXECUTION_FAIL and rows["r0"].get("reject_reason") is None
    # Default concurrency: two programs per core, shared by the executor's concurrent tasks.
    shared = execute.SandboxPlan(Limits(), "auto", False, None, task_slots=2)
    assert shared.pool_size() == max(1, (2 * (os.cpu_count() or 1) + 1) // 2)

    from udfs.sandbox import probe

    monkeypatch.setattr(probe, "available_levels", lambda cgroup_parent=None: ("process",))
    strict = execute.SandboxPlan(Limits(), "bwrap", False, 2)
    refused = list(execute.execution_rows(records[:1], strict))
    assert refused[0]["retry_error"].startswith("sandbox: isolation 'bwrap'")
    assert refused[0].get("reject_reason") is None


# --- select ----------------------------------------------------------------------------------

def drawn(iid: str, rids: list[str], seed: int = 42) -> str:
    return min(rids, key=lambda rid: (hashlib.sha256(f"{seed}:{iid}:{rid}".encode()).hexdigest(), rid))


@pytest.mark.spark
def test_select_keeps_one_passing_response_per_distinct_instruction(lake):
    ctx, ran, *_ = lake
    assert ran["select"].rows_in == len(TEXT)
    sft = {r["instruction_id"]: r for r in ctx.lake.read(SFT).collect()}
    assert set(sft) == {IDS[n] for n in ("three", "mixed", "dup_a", "near_a")}
    three = [r["response_id"] for r in ctx.lake.read(RESPONSES).where(
        F.col("instruction_id") == IDS["three"]).collect()]
    assert sft[IDS["three"]]["response_id"] == drawn(IDS["three"], three)
    mixed = sft[IDS["mixed"]]
    assert mixed["response_id"] == hashlib.sha256(f"{IDS['mixed']}#1".encode()).hexdigest()
    assert mixed["repo"] == "acme/mixed" and mixed["licenses"] and mixed["seed_id"] == "seed-mixed"
    assert mixed["model"] == MADE_BY[0] and mixed["prompt_version"] == "respond-v1"
    assert mixed["instruction_prompt_version"] == "instruct-v1" and mixed["concepts"] == ["loops"]
    for row in sft.values():
        assert not any(marker in row["response"] for marker in MARKERS.values())
        assert "```python\ndef " in row["response"]
        # Sanitized as published, each choice recorded: tests stay only where the
        # instruction asks for them ("mixed"); moved asserts are in the instruction.
        choices = json.loads(row["sanitizing"])
        asked = row["instruction_id"] == IDS["mixed"]
        assert choices["tests_kept"] == asked and ("assert " in row["response"]) == asked
        moved = choices["asserts_in_instruction"]
        assert row["instruction"].count("\nassert ") == moved
        assert ("Your code should pass the following assertion" in row["instruction"]) == (moved > 0)


@pytest.mark.spark
def test_select_rejects_say_why_and_name_the_kept_id(lake):
    ctx, *_ = lake
    found = rejects(ctx, "select")
    assert {iid: reason for iid, (reason, _) in found.items()} == {
        IDS["fail"]: Reason.NO_PASSING_RESPONSE,
        IDS["missing"]: Reason.NO_PASSING_RESPONSE,
        IDS["dup_b"]: Reason.DUPLICATE_INSTRUCTION,
        IDS["same_resp"]: Reason.DUPLICATE_RESPONSE,
        IDS["near_b"]: Reason.NEAR_DUPLICATE_INSTRUCTION,
    }
    assert found[IDS["fail"]][1] == "0 of 4 responses passed (crash 1, fail 1, memory 1, timeout 1)"
    assert found[IDS["missing"]][1] == "0 of 1 responses passed (not runnable 1)"
    assert IDS["dup_a"] in found[IDS["dup_b"]][1]
    assert IDS["mixed"] in found[IDS["same_resp"]][1]
    # The two differ in their last word: 23 of their 25 distinct word 3-grams are shared.
    assert found[IDS["near_b"]][1] == f"near duplicate of {IDS['near_a']}: Jaccard {23 / 25:.3f} (threshold 0.70)"


@pytest.mark.spark
def test_only_complete_instructions_are_ready(lake):
    _, _, _, _, tmp = lake
    ctx = make(tmp / "ready")  # a lake of its own: only reads, no stage runs
    late, unanswered = "i90-late", "i91-unanswered"
    put(ctx, INSTRUCTIONS, [(iid, "seed-three", "function", "easy", [], "A late task text.", *INSTRUCT_BY)
                       for iid in (late, unanswered)])
    code, tests = passing("late", 7)
    put(ctx, RESPONSES, [(f"{late}#{k}", late, k, "x", code, tests, [], "stop", 1, *MADE_BY) for k in range(2)])
    put(ctx, PROGRESS, [("respond", late, "t")])  # `unanswered` is still being generated
    # One of the two runnable responses has a verdict: the other's chunk has not committed.
    put(ctx, EXECUTIONS, [(f"{late}#0", late, "pass", True, 0.1, "bwrap", 0, "", "", None, "t")])
    assert pending_of(select_stage.STAGE, ctx).count() == 0
    put(ctx, EXECUTIONS, [(f"{late}#1", late, "fail", False, 0.1, "bwrap", 1, "", "", None, "t")])
    assert [r["instruction_id"] for r in pending_of(select_stage.STAGE, ctx).collect()] == [late]


@pytest.mark.spark
def test_rerun_adds_nothing(lake):
    ctx, *_ = lake
    before = {spec.name: ctx.lake.read(spec).count() for spec in (EXECUTIONS, SFT, REJECTS)}
    assert run(execute.STAGE, ctx).rows_in == 0
    assert run(select_stage.STAGE, ctx).rows_in == 0
    assert {spec.name: ctx.lake.read(spec).count() for spec in (EXECUTIONS, SFT, REJECTS)} == before


# --- export ----------------------------------------------------------------------------------

@pytest.mark.spark
def test_export_files_load_with_fields_and_deterministic_splits(lake):
    ctx, _, out, infos, _ = lake
    kept = {r["instruction_id"] for r in ctx.lake.read(SFT).collect()}
    lines = {}
    for split in ("train", "validation"):
        for line in (out["jsonl"] / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert list(record)[:2] == ["instruction", "response"] and tuple(record) == EXPORT_FIELDS
            assert split_of(record["instruction_id"], 0.5) == split
            lines[record["instruction_id"]] = record
    assert set(lines) == kept
    tables = {split: pq.read_table(out["parquet"] / f"{split}-00000.parquet") for split in ("train", "validation")}
    assert {split: t.num_rows for split, t in tables.items()} == {
        split: infos["jsonl"]["splits"][split]["num_examples"] for split in ("train", "validation")}
    assert tables["train"].column_names[:2] == ["instruction", "response"]
    ids = [i for t in tables.values() for i in t.column("instruction_id").to_pylist()]
    assert sorted(ids) == sorted(kept)


@pytest.mark.spark
def test_export_card_and_info_and_same_bytes_again(lake):
    ctx, ran, out, infos, tmp = lake
    assert ran["export"]["rows_out"] == 4
    card = (out["jsonl"] / "README.md").read_text(encoding="utf-8")
    info = json.loads((out["jsonl"] / "dataset_info.json").read_text(encoding="utf-8"))
    counts = {s: info["splits"][s]["num_examples"] for s in ("train", "validation")}
    assert sum(counts.values()) == 4 == info["num_examples"]
    for split, n in counts.items():
        assert f"| {split} | {n:,} |" in card and f"path: {split}.jsonl" in card
    assert info["sources"]["licenses"]["MIT"] == 4 and "| MIT |" in card
    assert info["generation"]["response_prompt_versions"] == {"respond-v1": 4}
    assert info["generation"]["sampling"][0]["params"]["temperature"] == 0.7
    again = export_dataset(ctx, "jsonl", tmp / "again")
    assert again == infos["jsonl"]
    for name in ("train.jsonl", "validation.jsonl", "README.md", "dataset_info.json"):
        assert (tmp / "again" / name).read_bytes() == (out["jsonl"] / name).read_bytes()


# --- select as published: the global cleaning ----------------------------------------------

PUBLISHED_SELECT = ("select.diversify_function_names=global", "select.near_duplicates=false",
                    "select.sanitize.style=published")


def shuffled_first(rids: list[str], seed: int = 42) -> str:
    """The documented shuffle of the global cleaning: sha256("<run.seed>:<response_id>")."""
    return min(rids, key=lambda rid: (hashlib.sha256(f"{seed}:{rid}".encode()).hexdigest(), rid))


@pytest.mark.spark
def test_select_as_published_cleans_over_all_pairs_and_later_nights(lake):
    done, *_, tmp = lake
    ctx = make(tmp / "global", *PUBLISHED_SELECT)
    plant(ctx)
    put(ctx, EXECUTIONS, [tuple(r) for r in done.lake.read(EXECUTIONS).collect()])  # the same verdicts
    run(select_stage.STAGE, ctx)

    rids_of = {name: [r[0] for r in response_rows() if r[1] == IDS[name]] for name in TEXT}
    mixed_rid = hashlib.sha256(f"{IDS['mixed']}#1".encode()).hexdigest()  # its passing response
    same_rid = rids_of["same_resp"][0]
    # Word-for-word the same response: the one first in the shuffle keeps it.
    winner, loser = ("mixed", "same_resp") if shuffled_first([mixed_rid, same_rid]) == mixed_rid \
        else ("same_resp", "mixed")
    # Instructions equal but for whitespace: the first in the shuffle wins.
    dup_winner = "dup_a" if shuffled_first(rids_of["dup_a"] + rids_of["dup_b"]) in rids_of["dup_a"] else "dup_b"
    dup_loser = "dup_b" if dup_winner == "dup_a" else "dup_a"
    sft = {r["instruction_id"]: r for r in ctx.lake.read(SFT).collect()}
    # No near-duplicate step as published: near_a and near_b both stay.
    assert set(sft) == {IDS[n] for n in ("three", winner, dup_winner, "near_a", "near_b")}
    assert all(len(row["dedup_keys"]) == 3 for row in sft.values())
    assert json.loads(sft[IDS["three"]]["sanitizing"])["style"] == "published"
    found = rejects(ctx, "select")
    assert found[IDS[loser]] == (Reason.DUPLICATE_RESPONSE, f"same response (whitespace removed) as {IDS[winner]}")
    assert found[IDS[dup_loser]][0] == Reason.DUPLICATE_INSTRUCTION and IDS[dup_winner] in found[IDS[dup_loser]][1]

    # A later night: a new seed's instruction whose code defines near_a's function name.
    later = "i95-later"
    put(ctx, INSTRUCTIONS, [(later, "seed-later", "function", "easy", [], "Read a date written as text.",
                             *INSTRUCT_BY)])
    code, tests = passing("parse_date", 9)
    put(ctx, RESPONSES, [(f"{later}#0", later, 0, response_text(code, tests, "later"), code, tests, [], "stop", 1,
                          *MADE_BY)])
    put(ctx, PROGRESS, [("respond", later, "t")])
    put(ctx, EXECUTIONS, [(f"{later}#0", later, "pass", True, 0.1, "bwrap", 0, "", "", None, "t")])
    assert run(select_stage.STAGE, ctx).rows_in == 1
    assert rejects(ctx, "select")[later] == (
        Reason.SAME_FUNCTION_NAMES, f"defines the same function names, in order, as {IDS['near_a']} (over all pairs)")
