"""Live progress over real UDP on localhost: task senders -> the driver's listener."""

from __future__ import annotations

import json
import socket
import time

import pytest

from jobs.core.progress import ProgressListener
from udfs.progress import ProgressSender


@pytest.fixture
def listener():
    heard = ProgressListener("respond", "tokens", stage_rows=1_000, every=3600)
    yield heard
    heard.close()


def send(listener: ProgressListener, **fields) -> None:
    message = {"token": listener.token, "spark_stage": 7, "task": "7.0.0", "rows": 0, "units": 0, **fields}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(json.dumps(message).encode(), (listener.target.host, listener.target.port))


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_task_sender_reaches_the_listener_with_its_running_totals(listener):
    listener.begin_chunk(0, 2, 500, 0)
    sender = ProgressSender(listener.target)
    sender.add(10, 400)
    sender.close()  # the closing datagram carries the totals whatever the throttle held back
    assert wait_for(lambda: listener._state.totals() == (10, 400))
    assert listener.line().startswith("[respond] chunk 1/2: 10 of ~500 rows")


def test_totals_are_per_task_and_the_newest_datagram_of_a_task_wins(listener):
    listener.begin_chunk(0, 1, 1_000, 0)
    send(listener, task="7.0.0", rows=5, units=50)
    send(listener, task="7.0.0", rows=9, units=90)  # the same task, later: replaces
    send(listener, task="7.1.0", rows=3, units=30)
    assert wait_for(lambda: listener._state.totals() == (12, 120))


def test_datagrams_of_another_run_or_malformed_ones_change_nothing(listener):
    listener.begin_chunk(0, 1, 100, 0)
    assert not listener.receive(b"not json")
    assert not listener.receive(json.dumps({"token": "guess", "spark_stage": 1, "task": "x",
                                            "rows": 99, "units": 1}).encode())
    assert not listener.receive(json.dumps({"token": listener.token, "task": "x"}).encode())
    assert listener._state.totals() == (0, 0)


def test_tasks_of_an_earlier_chunk_no_longer_count(listener):
    listener.begin_chunk(0, 2, 50, 0)
    assert listener.receive(json.dumps({"token": listener.token, "spark_stage": 3, "task": "3.0.0",
                                        "rows": 50, "units": 500}).encode())
    listener.begin_chunk(1, 2, 50, 50)
    # A late datagram of chunk 1's Spark stage arrives during chunk 2.
    assert not listener.receive(json.dumps({"token": listener.token, "spark_stage": 3, "task": "3.0.0",
                                            "rows": 50, "units": 500}).encode())
    assert listener.receive(json.dumps({"token": listener.token, "spark_stage": 4, "task": "4.0.0",
                                        "rows": 10, "units": 100}).encode())
    assert listener._state.totals() == (10, 100)


def test_the_line_gives_the_rate_and_the_time_left_of_the_stage(listener):
    listener.begin_chunk(0, 4, 250, 0)
    listener.begin_chunk(1, 4, 250, 250)
    chunk_started, stage_started = listener._state.started, listener._stage_started
    listener.receive(json.dumps({"token": listener.token, "spark_stage": 9, "task": "9.0.0",
                                 "rows": 100, "units": 2_000}).encode())
    # 2,000 tokens in the chunk's 10 s; 350 rows of the stage in its 35 s: 10 rows/s, so
    # the 650 rows left take 65 s.
    line = listener.line(now=chunk_started + 10)
    assert "200.0 tokens/s" in line
    stage_elapsed = chunk_started + 10 - stage_started
    left = round(650 / (350 / stage_elapsed))
    assert f"stage 350 of 1,000 rows, about {left}s left" in line
    assert "about 1m05s left" in listener.line(now=stage_started + 35)


def test_before_any_task_reports_the_line_says_so(listener):
    listener.begin_chunk(0, 1, 10, 0)
    assert "no task has reported yet" in listener.line()


def test_a_sender_without_a_target_only_counts():
    sender = ProgressSender(None)
    sender.add(3, 30)
    sender.close()
    assert (sender.rows, sender.units) == (3, 30)
