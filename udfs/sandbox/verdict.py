"""What a finished run means: the harness's report, a bounded view of the output, and the
status rules. Pure functions, unit-tested without processes."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

from udfs.sandbox.limits import Limits

STATUSES = ("pass", "fail", "timeout", "memory", "crash", "sandbox-error")
TAIL_BYTES = 4096  # of stdout and of stderr kept for the Outcome
_MEMORY_SIGNS = (b"MemoryError", b"Cannot allocate memory")


@dataclass(frozen=True)
class Outcome:
    status: str  # one of STATUSES
    passed: bool
    exit_code: int | None  # negative: killed by that signal; None: nothing ran
    duration_s: float
    isolation: str  # the level the program ran under, "none" when it did not run
    stdout_tail: str
    stderr_tail: str
    detail: str = ""  # why, in words, for anything but a pass
    kept: tuple[str, ...] = ()  # files handed back from the program's dir (run_program keep=)
    # CPU seconds of the whole program (its cgroup), else of its main process and the
    # children it reaped; None when it did not run or nothing could tell.
    cpu_s: float | None = None


def not_run(status: str, detail: str, level: str = "none") -> Outcome:
    """The outcome of a program that was never started, saying why."""
    return Outcome(status, False, None, 0.0, level, "", detail, detail)


@dataclass
class Capture:
    """A bounded view of a run's output: the tail of each stream and the total read."""

    budget: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, stream: bytearray, chunk: bytes) -> bool:
        """Keep the chunk's tail; False once the run has written more than its budget."""
        self.total += len(chunk)
        stream += chunk
        del stream[:-TAIL_BYTES]
        return self.total <= self.budget


@dataclass(frozen=True)
class Report:
    """What the harness said on its report pipe."""

    started: bool  # the program's limits were in place and it was about to run
    exit_code: int | None = None  # Popen style, negative for a signal; None: no report
    cpu_s: float | None = None  # of the program's process and its reaped children


def parse_report(data: bytes) -> Report:
    started = data.startswith(b"1")
    words = data[1:].split() if started else data.split()
    try:
        status, cpu = int(words[0]), float(words[1])
        return Report(started, os.waitstatus_to_exitcode(status), cpu)
    except (IndexError, ValueError):
        return Report(started)  # the supervisor was killed (timeout, or by the program)


def exit_code_from(returncode: int, report: Report) -> int:
    """The program's exit code, negative for a signal, as exactly as known."""
    if report.exit_code is not None:
        return report.exit_code
    if returncode > 128:  # a wrapper or the supervisor passing on a signal death
        return 128 - returncode
    return returncode


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def judge(
    *, limits: Limits, report: Report, reason: str | None, returncode: int,
    marker_seen: bool, stderr_tail: bytes, oom_kills: int = 0, memory_seen: int | None = None,
) -> tuple[str, str]:
    """(status, detail) for one finished run.

    `reason`: why the runner stopped it ("timeout", "cpu", "memory", "output"), None if
    it ended. `memory_seen`: the most memory the runner's polling saw (bwrap without a
    cgroup), for the detail of a "memory" stop.
    `returncode` is what the outermost process exited with: only it and the marker
    decide a pass, as a program that reached the report pipe could write anything there.
    `oom_kills`: processes of the run the kernel killed at the cgroup's memory limit; any
    makes the run `memory`, even if the process that printed the marker survived.
    """
    if reason == "timeout":
        return "timeout", f"wall time over {limits.wall_seconds:g} s"
    if reason == "cpu":
        return "timeout", f"CPU time over {limits.cpu_seconds} s (all processes of the program)"
    if not report.started:
        # The harness never got to the program: bwrap, unshare or Python failed.
        return "sandbox-error", f"the sandbox did not start (exit code {returncode})"
    if reason == "memory":
        seen = f": {memory_seen} bytes in use when stopped" if memory_seen else ""
        return "memory", (f"out of memory: the program's processes and files reached its "
                          f"limit of {limits.memory_bytes} bytes{seen} (polled, no cgroup)")
    if oom_kills:
        return "memory", (f"out of memory: {oom_kills} process(es) killed at the program's "
                          f"limit of {limits.memory_bytes} bytes")
    if reason == "output":
        return "fail", f"output over {limits.output_bytes} bytes"
    if returncode == 0 and marker_seen:
        return "pass", ""
    if any(sign in stderr_tail for sign in _MEMORY_SIGNS):
        return "memory", f"out of memory (limit {limits.memory_bytes} bytes)"
    code = exit_code_from(returncode, report)
    cpu_limited = report.cpu_s is not None and report.cpu_s >= limits.cpu_seconds
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu_limited):
        return "timeout", f"CPU time over {limits.cpu_seconds} s"
    if code < 0:
        return "crash", f"killed by {_signal_name(-code)}"
    if code != 0:
        return "fail", f"exit code {code}"
    return "fail", "exit code 0 without the completion marker: the program ended before its last test"
