"""The lake's lease on a local directory (jobs/core/lease.py), without Spark."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jobs.core.lease import Holder, LeaseHeld, LocalStore, acquire, current_holder


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(str(tmp_path / "lake" / "_lease"))


def test_a_second_run_is_refused_with_the_holder_named(store: LocalStore):
    lease = acquire(store, "night-1", 60, "/lake")
    try:
        with pytest.raises(LeaseHeld) as refused:
            acquire(store, "manual-2", 60, "/lake")
        message = str(refused.value)
        assert "lake /lake is in use by run night-1 on " in message and " since " in message
    finally:
        lease.release()
    assert current_holder(store, 60) is None
    acquire(store, "manual-2", 60, "/lake").release()  # free again once released


def test_of_runs_starting_together_exactly_one_takes_the_lease(store: LocalStore):
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def contend(index: int) -> None:
        start.wait()
        try:
            acquire(store, f"run-{index}", 60, "/lake")
            outcomes.append("took")
        except LeaseHeld:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["took"]


def test_a_killed_runs_lease_expires(store: LocalStore):
    # A holder that never renews (its process was killed): written as it would have left it.
    stale = Holder("killed", "host-a", 1, time.time() - 100, time.time() - 100)
    assert store.create("000000000001.json", stale.encode())
    assert current_holder(store, 60) is None
    lease = acquire(store, "next-night", 60, "/lake")
    assert lease.generation == 2
    lease.release()


def test_a_retried_task_of_the_same_run_takes_its_lease_over(store: LocalStore):
    first = acquire(store, "job-77", 60, "/lake")
    first._stop.set()  # the task died: nobody renews or releases
    retry = acquire(store, "job-77", 60, "/lake")
    assert retry.generation == first.generation + 1
    retry.release()


def test_the_lease_is_renewed_while_the_run_holds_it(store: LocalStore):
    lease = acquire(store, "long-run", 2, "/lake")
    try:
        time.sleep(3)  # past lease_seconds: only renewals keep it held
        holder = current_holder(store, 2)
        assert holder is not None and holder.run_id == "long-run"
        assert holder.renewed_at > holder.started_at
    finally:
        lease.release()


def test_a_run_that_was_taken_over_knows_it_lost_the_lease(store: LocalStore):
    lease = acquire(store, "stalled", 2, "/lake")
    lease._stop.set()  # its renewals stall (a long GC pause, a hung driver) ...
    lease._thread.join()
    time.sleep(2.2)  # ... past lease_seconds, and another run takes the lake
    other = acquire(store, "next", 2, "/lake")
    lease._stop.clear()
    lease.lease_seconds = 0.04
    lease._renew_until_released()  # its next renewal finds a newer generation
    assert lease.lost is not None and "run next" in lease.lost
    lease.release()  # must not touch the new holder's lease
    holder = current_holder(store, 60)
    assert holder is not None and holder.run_id == "next"
    other.release()


def test_a_holder_killed_on_this_host_frees_the_lake_at_once(store: LocalStore):
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = Holder("killed-here", socket.gethostname(), int(gone.stdout), time.time(), time.time())
    assert store.create("000000000001.json", dead.encode())
    assert current_holder(store, 600) is None
    elsewhere = Holder("elsewhere", "another-host", int(gone.stdout), time.time(), time.time())
    assert store.create("000000000002.json", elsewhere.encode())
    assert current_holder(store, 600) == elsewhere  # a process of another host: cannot tell


def test_without_hard_links_the_create_is_still_exclusive(store: LocalStore, monkeypatch):
    def no_links(*_args: object) -> None:
        raise PermissionError("hard links are not supported here")

    monkeypatch.setattr("os.link", no_links)  # as on a FUSE mount (/Volumes)
    assert store.create("000000000001.json", b"first")
    assert not store.create("000000000001.json", b"second")
    assert store.read("000000000001.json") == b"first"


def test_a_torn_lease_file_counts_as_expired(store: LocalStore):
    assert store.create("000000000001.json", b'{"run_id": "x", "ho')
    assert current_holder(store, 60) is None
    acquire(store, "after", 60, "/lake").release()


def test_old_generations_are_cleaned_up(store: LocalStore):
    for index in range(4):
        acquire(store, f"run-{index}", 60, "/lake").release()
    assert sorted(store.names()) == ["000000000003.json", "000000000004.json"]


def test_a_local_lake_is_refused_before_spark_starts(tmp_path: Path):
    from jobs.core.lease import local_lease

    first = local_lease(str(tmp_path / "lake"), "night-1", 60)
    assert first is not None
    with pytest.raises(LeaseHeld, match="is in use by run night-1"):
        local_lease(str(tmp_path / "lake"), "manual", 60)
    first.release()
    (tmp_path / "file").write_text("not a lake")
    assert local_lease(str(tmp_path / "file"), "x", 60) is None  # the write check says why
    assert local_lease("s3a://bucket/lake", "x", 60) is None  # taken through Spark's store
