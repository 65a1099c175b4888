"""Watching one run: its output, bounded, until it ends, the wall deadline passes or it
writes too much."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable

from udfs.sandbox.limits import Limits
from udfs.sandbox.verdict import Capture

_CHUNK = 65536
_EXIT_GRACE_S = 0.5  # after the program exits, for output still in the pipes
_DRAIN_S = 2.0  # after a kill, for the pipes to close (they do once all holders died)
_POLL_S = 0.1  # exit polling when pidfd_open is missing
# CPU polling: never longer than all cores busy need to use what is left of the limit
# (so it is overshot by at most cores x the shortest poll), and never over 0.1 s.
_CPU_POLL_S = (0.005, 0.1)
_MEMORY_POLL_S = 0.025  # where the runner polls memory itself (udfs/sandbox/meter.py)

# What the runner can tell of the whole program now: (CPU seconds, memory bytes), each
# None when unknown (memory is None where a cgroup limits it in the kernel).
Usage = Callable[[], tuple[float | None, int | None]]


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3: poll instead
        return None


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child unreaped: the group id stays its own until Popen.wait.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _cpu_poll_s(used: float, limit: float) -> float:
    cores = os.cpu_count() or 1
    shortest, longest = _CPU_POLL_S
    return max(shortest, min(longest, (limit - used) / cores))


def watch(
    proc: subprocess.Popen[bytes], limits: Limits, kill: Callable[[], None],
    usage: Usage | None = None,
) -> tuple[Capture, str | None]:
    """Read the run's output until it ends; (capture, "timeout" | "cpu" | "memory" |
    "output" | None).

    `kill` ends everything the run started. It is called at the wall deadline, past
    the output budget, when `usage` says the whole program's CPU seconds (from its
    cgroup, or polled) reached cpu_seconds or its memory (polled, where no cgroup limits
    it) reached memory_bytes, or when the program exited but something it left holds
    the pipes open; the pipes are then drained, discarding, until every holder is gone
    or _DRAIN_S passed.
    """
    assert proc.stdout is not None and proc.stderr is not None
    capture = Capture(limits.output_bytes)
    streams = {proc.stdout.fileno(): capture.stdout, proc.stderr.fileno(): capture.stderr}
    pidfd = _pidfd(proc.pid)
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ)
    reason: str | None = None
    exited = killed = False
    act_at = time.monotonic() + limits.wall_seconds
    try:
        while streams or not exited:
            now = time.monotonic()
            if now >= act_at:
                if killed:
                    break
                reason = reason or (None if exited else "timeout")
                kill()
                killed, act_at = True, now + _DRAIN_S
                continue
            wait = act_at - now if pidfd is not None else min(act_at - now, _POLL_S)
            if usage is not None and not killed:
                used, memory = usage()
                over = ("cpu" if used is not None and used >= limits.cpu_seconds else
                        "memory" if memory is not None and memory >= limits.memory_bytes else None)
                if over is not None:
                    reason = reason or over
                    kill()
                    killed, act_at = True, now + _DRAIN_S
                    continue
                if used is not None:
                    wait = min(wait, _cpu_poll_s(used, limits.cpu_seconds))
                if memory is not None or used is None:  # polled, or not known yet
                    wait = min(wait, _MEMORY_POLL_S)
            events = selector.select(wait)
            if pidfd is None and not exited and _has_exited(proc.pid):
                exited, act_at = True, min(act_at, time.monotonic() + _EXIT_GRACE_S)
            for key, _ in events:
                if key.fd == pidfd:
                    selector.unregister(key.fd)
                    exited = True
                    if not killed:
                        act_at = min(act_at, time.monotonic() + _EXIT_GRACE_S)
                    continue
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    selector.unregister(key.fd)
                    del streams[key.fd]
                elif not killed and not capture.add(streams[key.fd], chunk):
                    reason = "output"
                    kill()
                    killed, act_at = True, time.monotonic() + _DRAIN_S
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
    return capture, reason


