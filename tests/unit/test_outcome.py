"""One outcome vocabulary (schemas/outcome.py): every stage names its rejects and itself
with it, and no stage writes a reason as a string literal of its own."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from jobs.core.registry import DAG
from schemas.outcome import (
    REJECT_DETAIL,
    REJECT_REASON,
    RETRY_ERROR,
    Reason,
    Source,
    reject,
    retry,
)
from udfs.sandbox import STATUSES

REPO = Path(__file__).resolve().parents[2]
OUTCOME_KEYS = {REJECT_REASON, REJECT_DETAIL, RETRY_ERROR}


def test_words_are_their_text_in_tables_strings_and_pickles():
    word = Reason.NEAR_DUPLICATE
    assert word == "near_duplicate" and f"{word}" == "near_duplicate" and str(word) == "near_duplicate"
    assert f"[{Source.DEDUP:>7}]" == "[  dedup]"
    assert pickle.loads(pickle.dumps(word)) is word
    assert {"near_duplicate": 1}[word] == 1


def test_every_dag_stage_records_under_a_source_name():
    assert {step.name for step in DAG} <= {s.value for s in Source}
    assert all(isinstance(step.name, Source) for step in DAG)


def test_every_sandbox_verdict_but_pass_has_its_reject_and_nothing_else_does():
    rejected = [s for s in STATUSES if s not in ("pass", "sandbox-error")]
    assert [Reason.execution(s) for s in rejected] == [
        Reason.EXECUTION_FAIL, Reason.EXECUTION_TIMEOUT, Reason.EXECUTION_MEMORY, Reason.EXECUTION_CRASH]
    with pytest.raises(ValueError):
        Reason.execution("sandbox-error")  # a host failure is a retry, never a reject


def test_reject_and_retry_fill_the_outcome_columns():
    assert reject(Reason.NO_TESTS, "no assert") == {REJECT_REASON: "no_tests", REJECT_DETAIL: "no assert"}
    assert retry("timed out") == {RETRY_ERROR: "timed out"}


def _literal_reasons(path: Path) -> list[str]:
    """String constants written as a reject reason: `{REJECT_REASON: "x"}`, `reason="x"`,
    `reject_reason="x"` or `row[REJECT_REASON] = "x"`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        pairs: list[tuple[ast.AST, ast.AST]] = []
        if isinstance(node, ast.Dict):
            pairs = [(k, v) for k, v in zip(node.keys, node.values, strict=True) if k is not None]
        elif isinstance(node, ast.Call):
            pairs = [(ast.Constant(kw.arg), kw.value) for kw in node.keywords if kw.arg]
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
            pairs = [(node.targets[0].slice, node.value)]
        for key, value in pairs:
            name = key.id if isinstance(key, ast.Name) else key.value if isinstance(key, ast.Constant) else None
            if name in ("REJECT_REASON", "reject_reason", "reason") and isinstance(value, ast.Constant) \
                    and isinstance(value.value, str):
                found.append(f"{path.name}:{getattr(node, 'lineno', 0)}: {value.value!r}")
    return found


def test_no_stage_or_udf_writes_a_reject_reason_as_its_own_string():
    sources = [p for package in ("jobs", "udfs") for p in (REPO / package).rglob("*.py")]
    assert [hit for path in sources for hit in _literal_reasons(path)] == []


def test_the_literal_finder_finds_literals(tmp_path: Path):
    # The scan above must be able to fail: it does on the shapes it looks for.
    sample = tmp_path / "sample.py"
    sample.write_text('row = {REJECT_REASON: "mine"}\nrow.update(reject_reason="also")\n'
                      'row[REJECT_REASON] = "third"\nok = {REJECT_REASON: Reason.NO_TESTS}\n',
                      encoding="utf-8")
    assert len(_literal_reasons(sample)) == 3
