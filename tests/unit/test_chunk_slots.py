"""The scratch slots between chunk transforms and commits (jobs/core/runner.py)."""

from __future__ import annotations

import threading

from jobs.core.runner import SLOTS, _Slots


def test_a_chunk_waits_until_the_chunk_slots_before_it_has_committed() -> None:
    slots = _Slots()
    assert all(slots.wait_for_slot(index) for index in range(SLOTS))  # free slots: no wait
    started = threading.Event()

    def next_chunk() -> None:
        if slots.wait_for_slot(SLOTS):
            started.set()

    waiter = threading.Thread(target=next_chunk)
    waiter.start()
    assert not started.wait(0.3)  # chunk SLOTS reuses chunk 0's slot
    slots.committed(0)
    assert started.wait(5)
    waiter.join(5)


def test_a_stopped_run_releases_the_transforms_waiting_for_a_slot() -> None:
    slots = _Slots()
    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(slots.wait_for_slot(SLOTS + 3)))
    waiter.start()
    slots.stop()
    waiter.join(5)
    assert answers == [False]
