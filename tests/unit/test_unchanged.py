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


def test_stages_not_run_stay_idle_only_when_the_run_committed_nothing():
    before = frozenset({"extract", "decontaminate", "typecheck"})
    # `--stages dedup` ran, ended idle, and committed nothing: the others are still idle.
    quiet = next_record("s1", "s1", before, ran={"dedup"}, ended_idle={"dedup"})
    assert quiet == IdleRecord("s1", before | {"dedup"})
    # It committed something: what it did not run may have new input now.
    busy = next_record("s1", "s2", before, ran={"dedup"}, ended_idle={"dedup"})
    assert busy == IdleRecord("s2", frozenset({"dedup"}))
    # A stage that ran and did not end idle (failed rows, an error) is dropped either way.
    failed = next_record("s1", "s1", before, ran={"extract"}, ended_idle=set())
    assert failed.stages == {"decontaminate", "typecheck"}
