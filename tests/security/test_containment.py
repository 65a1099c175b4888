"""Resource attacks: each is contained, judged right, and leaves no process behind."""

from __future__ import annotations

import os
import resource
import signal
import time

from tests.security.helpers import (
    LIMITS,
    assert_none_survive,
    needs_own_uid_or_pidns,
    needs_sandbox,
    new_token,
    run_hostile,
    survivors,
)
from udfs.sandbox import TAIL_BYTES, Limits

pytestmark = [needs_sandbox, needs_own_uid_or_pidns]


def test_fork_count_is_capped_even_as_root() -> None:
    token = new_token()
    outcome = run_hostile(
        """
        import os, time
        children = 0
        try:
            for _ in range(500):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
        except OSError as exc:
            print("refused after", children, exc.errno)
        """,
        token,
    )
    words = outcome.stdout_tail.split()
    assert words[:2] == ["refused", "after"], outcome
    # The program itself is one task; whatever else runs in its namespace counts too.
    assert int(words[2]) < LIMITS.max_processes
    assert_none_survive(token)


def test_fork_count_stays_capped_from_a_nested_user_namespace() -> None:
    # A new user namespace restarts the per-namespace count, not its parent's.
    token = new_token()
    outcome = run_hostile(
        """
        import ctypes, os, time
        ctypes.CDLL(None, use_errno=True).unshare(0x10000000)  # CLONE_NEWUSER, may fail
        children = 0
        try:
            for _ in range(500):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
        except OSError:
            print("refused after", children)
        """,
        token,
    )
    words = outcome.stdout_tail.split()
    assert words[:2] == ["refused", "after"] and int(words[2]) < LIMITS.max_processes, outcome
    assert_none_survive(token)


def test_fork_bomb() -> None:
    token = new_token()
    outcome = run_hostile(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        token,
        Limits(cpu_seconds=5, wall_seconds=1.5, max_processes=16),
    )
    assert outcome.status == "timeout"
    assert outcome.duration_s < 1.5 + 3.0
    assert_none_survive(token)


def test_memory_bomb() -> None:
    token = new_token()
    outcome = run_hostile(
        """
        hoard = []
        while True:
            hoard.append(bytearray(16 << 20))
        """,
        token,
    )
    assert outcome.status == "memory", outcome
    assert_none_survive(token)


def test_infinite_loop() -> None:
    token = new_token()
    outcome = run_hostile("while True:\n    pass\n", token, Limits(cpu_seconds=1, wall_seconds=30.0))
    assert outcome.status == "timeout" and "CPU" in outcome.detail, outcome
    assert_none_survive(token)


def test_busy_loop_ignoring_signals_is_killed_at_the_cpu_hard_limit() -> None:
    token = new_token()
    outcome = run_hostile(
        """
        import signal
        for sig in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            pass
        """,
        token,
        Limits(cpu_seconds=1, wall_seconds=30.0),
    )
    assert outcome.status == "timeout" and outcome.exit_code == -signal.SIGKILL, outcome
    assert_none_survive(token)


def test_sleeper_ignoring_signals_is_killed_at_the_wall_timeout() -> None:
    token = new_token()
    outcome = run_hostile(
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
        """,
        token,
        Limits(wall_seconds=1.0),
    )
    assert outcome.status == "timeout" and "wall" in outcome.detail
    assert outcome.duration_s < 1.0 + 3.0
    assert_none_survive(token)


def test_daemon_does_not_outlive_the_run(tmp_path) -> None:
    token = new_token()
    drop = tmp_path / "drop"
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)  # writable by whatever uid the program has, were it ever reachable
    trace = drop / "daemon-was-here"
    outcome = run_hostile(
        f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                for fd in (0, 1, 2):
                    os.close(fd)
                time.sleep(0.7)
                open({str(trace)!r}, "w").write("alive")
            os._exit(0)
        print("parent leaves")
        """,
        token,
    )
    assert outcome.passed, outcome  # the program itself did nothing wrong
    time.sleep(1.2)  # past the daemon's wake-up
    assert not trace.exists()
    assert survivors(token) == []


def test_killing_its_parent_leaves_the_caller_alive() -> None:
    token = new_token()
    me = os.getpid()
    outcome = run_hostile(
        f"""
        import os, signal
        for pid in (os.getppid(), {me}):
            try:
                os.kill(pid, signal.SIGKILL)
                print("killed", pid)
            except OSError as exc:
                print("refused", pid, exc.errno)
        raise SystemExit(3)
        """,
        token,
    )
    assert outcome.status in ("fail", "crash"), outcome
    assert f"killed {me}" not in outcome.stdout_tail
    assert_none_survive(token)


def test_output_flood_is_capped_in_memory_and_time() -> None:
    token = new_token()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    outcome = run_hostile(
        """
        import sys
        block = b"x" * (1 << 20)
        for _ in range(400):  # 400 MB to each stream
            sys.stdout.buffer.write(block)
            sys.stderr.buffer.write(block)
        """,
        token,
    )
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert outcome.status == "fail" and "output" in outcome.detail, outcome
    assert outcome.duration_s < LIMITS.wall_seconds
    assert len(outcome.stdout_tail) <= TAIL_BYTES and len(outcome.stderr_tail) <= TAIL_BYTES
    assert (peak_after - peak_before) * 1024 < 32 << 20
    assert_none_survive(token)
