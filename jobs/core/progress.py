"""The driver's side of live progress (udfs/progress.py): a UDP listener per stage run
that sums the tasks' running totals and logs a line every 30 seconds.

A chunk of a generation stage is one Spark job whose tasks end together; without this,
20,000 generations at n = 10 show no sign of life until they commit. The line says rows
done in the chunk and the stage, the rate (tokens/s for the model stages, programs/s for
execute) and the time left.

Where tasks cannot reach this process (Spark Connect: the driver is the server, not this
client) there is no listener and only the per-chunk lines are logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from jobs.core.context import Context
from jobs.core.session import remote_url
from udfs.progress import SEND_EVERY_SECONDS, ProgressTarget

log = logging.getLogger("selfalign")
EVERY_SECONDS = 30.0  # how often the driver logs a live line


def duration(seconds: float) -> str:
    """A short duration for people: 42s, 3m05s, 1h02m."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class ChunkState:
    index: int = 0
    chunks: int = 1
    rows: int = 0  # rows in this chunk (about: chunks are hash cuts)
    done_before: int = 0  # rows of the stage committed by earlier chunks
    started: float = field(default_factory=time.monotonic)
    tasks: dict[str, tuple[int, int]] = field(default_factory=dict)  # task -> (rows, units)
    old_spark_stages: set[int] = field(default_factory=set)

    def totals(self) -> tuple[int, int]:
        return sum(r for r, _ in self.tasks.values()), sum(u for _, u in self.tasks.values())


class ProgressListener:
    """Receives one stage run's datagrams; `line()` is what gets logged."""

    def __init__(self, stage: str, unit: str, stage_rows: int = 0, every: float | None = None,
                 host: str = "127.0.0.1") -> None:
        self.stage, self.unit, self.every = stage, unit, every or EVERY_SECONDS
        self.stage_rows = stage_rows
        self.token = secrets.token_hex(16)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # All interfaces: executors on other hosts send to spark.driver.host.
        self._socket.bind(("0.0.0.0", 0))
        self._socket.settimeout(0.5)
        # Tasks send at most every few seconds: a line's figures are never older than that.
        self.target = ProgressTarget(host, self._socket.getsockname()[1], self.token,
                                     every=min(SEND_EVERY_SECONDS, self.every / 2))
        self._state = ChunkState()
        self._stage_started: float | None = None  # the first chunk's start
        self._seen_spark_stages: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"progress-{stage}", daemon=True)
        self._thread.start()

    def begin_chunk(self, index: int, chunks: int, rows: int, done_before: int) -> None:
        """A new chunk's tasks start: earlier tasks' datagrams no longer count."""
        with self._lock:
            self._state = ChunkState(index, chunks, rows, done_before,
                                     old_spark_stages=set(self._seen_spark_stages))
            if self._stage_started is None:
                self._stage_started = self._state.started

    def receive(self, payload: bytes) -> bool:
        """Take one datagram; False (and nothing changes) unless it is a well-formed one of
        this run."""
        try:
            message = json.loads(payload)
            if not isinstance(message, dict) or message.get("token") != self.token:
                return False
            spark_stage, task = int(message["spark_stage"]), str(message["task"])[:64]
            rows, units = int(message["rows"]), int(message["units"])
        except (ValueError, KeyError, TypeError):
            return False
        with self._lock:
            if spark_stage in self._state.old_spark_stages:
                return False
            self._seen_spark_stages.add(spark_stage)
            self._state.tasks[task] = (max(0, rows), max(0, units))
        return True

    def line(self, now: float | None = None) -> str:
        with self._lock:
            state = self._state
            rows, units = state.totals()
        now = now or time.monotonic()
        elapsed = max(now - state.started, 1e-9)
        parts = [f"[{self.stage}] chunk {state.index + 1}/{state.chunks}: {rows:,} of ~{state.rows:,} rows",
                 f"{units / elapsed:,.1f} {self.unit}/s"]
        done = state.done_before + rows
        if rows and self.stage_rows:
            # The stage's own pace so far, commits included: a chunk a few seconds old
            # would promise hours.
            stage_elapsed = max(now - (self._stage_started or state.started), 1e-9)
            left = max(self.stage_rows - done, 0) / (done / stage_elapsed)
            parts.append(f"stage {done:,} of {self.stage_rows:,} rows, about {duration(left)} left")
        elif not rows:
            parts.append(f"no task has reported yet ({duration(elapsed)} into the chunk)")
        return ", ".join(parts)

    def _serve(self) -> None:
        logged_at = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                payload, _ = self._socket.recvfrom(2048)
                self.receive(payload)
            if time.monotonic() - logged_at >= self.every:
                logged_at = time.monotonic()
                log.info("%s", self.line())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


def driver_host(ctx: Context) -> str | None:
    """The address executors reach this process at; None where they cannot (Connect)."""
    if remote_url(ctx.cfg.spark):
        return None
    try:
        master = ctx.spark.conf.get("spark.master", "") or ""
        if master.startswith("local"):
            return "127.0.0.1"
        return ctx.spark.conf.get("spark.driver.host", None) or None
    except Exception:
        return None


@contextlib.contextmanager
def live_progress(ctx: Context, stage: str, unit: str | None) -> Iterator[ProgressListener | None]:
    """A listener for the stage run when its tasks report progress (`unit`: what they
    count, "tokens" or "programs") and can reach this process; None otherwise."""
    host = driver_host(ctx) if unit is not None else None
    if host is None:
        yield None
        return
    try:
        listener = ProgressListener(stage, unit or "rows", host=host)
    except OSError as exc:  # no socket for us: the run goes on without live lines
        log.warning("[%s] no live progress: %s", stage, exc)
        yield None
        return
    try:
        yield listener
    finally:
        listener.close()
