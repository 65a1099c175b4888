"""The idle record: which stages a run may skip, and what it leaves for the next."""

from __future__ import annotations

from jobs.core.unchanged import IdleRecord, next_record, still_idle


def test_a_record_survives_its_json_and_garbage_reads_as_none():
    record = IdleRecord("abc", frozenset({"extract", "dedup"}))
    assert IdleRecord.from_json(record.to_json()) == record
    for garbage in (None, "", "{", "[]", '{"state": "x"}', '{"state": "x", "idle_stages": 3}'):
        assert IdleRecord.from_json(garbage) is None, garbage


def test_only_an_unchanged_state_lets_stages_skip():
    record = IdleRecord("s1", frozenset({"extract"}))
    assert still_idle(record, "s1") == {"extract"}
    assert still_idle(record, "s2") == frozenset()
    assert still_idle(None, "s1") == frozenset()


def test_only_a_run_that_changed_nothing_leaves_a_record():
    before = frozenset({"extract", "decontaminate", "typecheck"})
    # `--stages dedup` found nothing pending and nothing changed: the others stay idle.
    quiet = next_record("s1", "s1", before, ran={"dedup"}, found_idle={"dedup"})
    assert quiet == IdleRecord("s1", before | {"dedup"})
    # Its own commits, or anyone else's during it: no record, the next run checks.
    assert next_record("s1", "s2", before, ran={"dedup"}, found_idle={"dedup"}) is None
    # A stage that ran and was not found idle (it could not start) is dropped.
    failed = next_record("s1", "s1", before, ran={"extract"}, found_idle=set())
    assert failed is not None and failed.stages == {"decontaminate", "typecheck"}
