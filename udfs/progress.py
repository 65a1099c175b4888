"""Live progress from inside a long task: each task sends its running totals to the
driver as small UDP datagrams (jobs/core/progress.py listens).

Fire and forget: a lost or refused datagram costs nothing, a task never waits or fails
for it, and no Spark job or accumulator is involved (accumulators reach the driver only
when a task ends, which is what a chunk of 20,000 generations waits for). Totals are
cumulative per task, so the newest datagram of a task says everything. The token is the
run's own random one: the listener drops anything else.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

SEND_EVERY_SECONDS = 5.0  # the most often a task sends, unless its target says more often


@dataclass(frozen=True)
class ProgressTarget:
    """Where a stage run's tasks send progress: plain values, pickled into the tasks."""

    host: str
    port: int
    token: str
    every: float = SEND_EVERY_SECONDS  # seconds between a task's datagrams


def task_key() -> tuple[int, str]:
    """The Spark stage id and this task's key (stage.partition.attempt); outside a Spark
    task, (-1, "local")."""
    try:
        from pyspark import TaskContext

        task = TaskContext.get()
    except ImportError:
        task = None
    if task is None:
        return -1, "local"
    return task.stageId(), f"{task.stageId()}.{task.partitionId()}.{task.attemptNumber()}"


class ProgressSender:
    """A task's running totals (rows done, units such as tokens), sent at most every
    `every` seconds and once more at the end."""

    def __init__(self, target: ProgressTarget | None) -> None:
        self.target = target
        self.every = target.every if target else SEND_EVERY_SECONDS
        self.rows = 0
        self.units = 0
        self._sent_at = 0.0
        self._socket: socket.socket | None = None
        self._spark_stage, self._task = task_key() if target else (-1, "")

    def add(self, rows: int, units: int = 0) -> None:
        self.rows += rows
        self.units += units
        if self.target is not None and time.monotonic() - self._sent_at >= self.every:
            self._send()

    def close(self) -> None:
        if self.target is not None:
            self._send()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self) -> None:
        assert self.target is not None
        self._sent_at = time.monotonic()
        message = json.dumps({"token": self.target.token, "spark_stage": self._spark_stage,
                              "task": self._task, "rows": self.rows, "units": self.units})
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode(), (self.target.host, self.target.port))
        except OSError:  # unreachable driver, full buffer: progress is best effort
            pass
