"""udfs.sandbox: the verdict rules as pure functions, then real runs for each status.

Real runs go through the strongest level this machine has (bwrap where installed);
tests/security/ holds the hostile programs.
"""

from __future__ import annotations

import signal

import pytest

from jobs.core.sections import SandboxConfig
from tests.security.helpers import lacking
from udfs import sandbox
from udfs.sandbox import (
    TAIL_BYTES,
    Capture,
    Limits,
    Report,
    available_levels,
    choose_isolation,
    exit_code_from,
    judge,
    parse_report,
    probe,
    probe_isolation,
    run_program,
    sandbox_env,
)
from udfs.sandbox.levels import FULL

FAST = Limits(cpu_seconds=2, wall_seconds=10.0, memory_bytes=512 << 20, max_processes=32,
              file_size_bytes=1 << 20, open_files=64, output_bytes=1 << 16)


def verdict(code: int | None = 0, cpu_s: float | None = 0.1, started: bool = True, **given) -> tuple[str, str]:
    """judge() on a run whose program exited with `code` (negative: signal) per its report."""
    facts = dict(limits=FAST, reason=None, returncode=0 if code is None else max(code, 0),
                 marker_seen=True, stderr_tail=b"")
    facts.update(given)
    return judge(report=Report(started, code, cpu_s), **facts)


# --- verdicts, no processes ------------------------------------------------------------

def test_pass_needs_exit_zero_and_the_marker() -> None:
    assert verdict() == ("pass", "")
    status, detail = verdict(marker_seen=False)
    assert status == "fail" and "marker" in detail
    assert verdict(1, returncode=1, marker_seen=False) == ("fail", "exit code 1")


def test_only_the_real_exit_code_makes_a_pass() -> None:
    # A report can be forged by a program that reopens the pipe; the exit code cannot.
    assert verdict(0, returncode=1)[0] == "fail"


def test_wall_timeout_and_output_cap_win_over_what_the_killed_program_left() -> None:
    assert verdict(None, reason="timeout", returncode=-9)[0] == "timeout"
    assert verdict(None, started=False, reason="timeout", returncode=-9)[0] == "timeout"
    assert verdict(None, reason="output", returncode=-9)[0] == "fail"


def test_a_harness_that_never_started_is_a_sandbox_error() -> None:
    status, detail = verdict(125, started=False, returncode=125, marker_seen=False)
    assert status == "sandbox-error" and "did not start" in detail


def test_memory_error_is_memory_unless_the_program_passed_anyway() -> None:
    tail = b"Traceback ...\nMemoryError\n"
    assert verdict(1, returncode=1, marker_seen=False, stderr_tail=tail)[0] == "memory"
    assert verdict(stderr_tail=tail)[0] == "pass"  # a test that expects MemoryError


@pytest.mark.parametrize(
    ("code", "cpu_s", "status"),
    [
        (-signal.SIGXCPU, 2.1, "timeout"),
        (-signal.SIGKILL, 3.0, "timeout"),  # RLIMIT_CPU's hard limit
        (-signal.SIGKILL, 0.2, "crash"),  # killed itself
        (-signal.SIGKILL, None, "crash"),  # no report: nothing says it was the limit
        (-signal.SIGSEGV, 0.2, "crash"),
        (-signal.SIGABRT, 0.2, "crash"),
        (139, 0.2, "fail"),  # a plain exit code, reported as such
    ],
)
def test_signals(code: int, cpu_s: float | None, status: str) -> None:
    returncode = 128 - code if code < 0 else code
    assert verdict(code, cpu_s, returncode=returncode, marker_seen=False)[0] == status


def test_report_parsing_and_exit_codes() -> None:
    assert parse_report(b"") == Report(False)
    assert parse_report(b"1") == Report(True)
    assert parse_report(b"1" + b"%d 1.500\n" % (signal.SIGSEGV)) == Report(True, -signal.SIGSEGV, 1.5)
    assert parse_report(b"%d 0.010\n" % (125 << 8)) == Report(False, 125, 0.01)
    # Without a report, a wrapper's 128 + n still says which signal.
    assert exit_code_from(139, Report(True)) == -signal.SIGSEGV
    assert exit_code_from(-9, Report(True)) == -9
    assert exit_code_from(139, Report(True, 139, 0.1)) == 139


def test_capture_keeps_a_bounded_tail_and_counts_everything() -> None:
    capture = Capture(budget=3 * TAIL_BYTES)
    for index in range(3):
        assert capture.add(capture.stdout, bytes([65 + index]) * TAIL_BYTES)
    assert len(capture.stdout) == TAIL_BYTES and capture.stdout[:1] == b"C"
    assert not capture.add(capture.stderr, b"x")  # one byte over the budget
    assert capture.total == 3 * TAIL_BYTES + 1


def test_environment_is_scrubbed() -> None:
    env = sandbox_env("/sandbox")
    assert sorted(env) == ["HOME", "LANG", "LOGNAME", "PATH", "PYTHONDONTWRITEBYTECODE",
                           "PYTHONHASHSEED", "USER"]
    assert env["HOME"] == "/sandbox" and env["PYTHONHASHSEED"] == "0"
    assert env["USER"] == env["LOGNAME"] == "sandbox"


def test_limits_match_the_config_section() -> None:
    assert Limits.from_settings(SandboxConfig()) == Limits()
    with pytest.raises(ValueError, match="wall_seconds"):
        Limits(wall_seconds=0)


# --- choosing a level -------------------------------------------------------------------

@pytest.fixture
def only_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "available_levels", lambda cgroup_parent=None: ("process",))


@pytest.mark.usefixtures("only_process")
def test_a_weaker_level_than_configured_is_refused_with_the_key_that_allows_it() -> None:
    level, refusal = choose_isolation("bwrap", allow_weaker=False)
    assert level == "process" and refusal is not None
    assert "'bwrap'" in refusal and "'process'" in refusal and "sandbox.allow_weaker" in refusal
    outcome = run_program("pass", FAST, isolation="bwrap")
    assert (outcome.status, outcome.passed, outcome.exit_code) == ("sandbox-error", False, None)
    assert outcome.isolation == "none" and "sandbox.allow_weaker" in outcome.detail


@pytest.mark.usefixtures("only_process")
def test_allow_weaker_takes_what_there_is_and_a_named_level_runs_as_asked() -> None:
    assert choose_isolation("bwrap", allow_weaker=True) == ("process", None)
    assert choose_isolation("auto", allow_weaker=True) == ("process", None)
    assert choose_isolation("process", allow_weaker=False) == ("process", None)


@pytest.mark.usefixtures("only_process")
def test_auto_refuses_generated_code_without_network_isolation_unless_allowed() -> None:
    level, refusal = choose_isolation("auto", allow_weaker=False)
    assert level == "process" and refusal is not None
    assert "'bwrap' is required" in refusal and "sandbox.allow_weaker" in refusal
    # One line naming what gives bwrap on each platform.
    assert "\n" not in refusal and "EMR:" in refusal and "Databricks:" in refusal
    assert "user.max_user_namespaces" in refusal and "conf/databricks/init-bubblewrap.sh" in refusal


def test_auto_runs_at_bwrap_without_a_cgroup_and_a_named_full_level_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probe, "available_levels", lambda cgroup_parent=None: ("process", "bwrap"))
    monkeypatch.setattr(probe.cgroup, "probe", lambda parent=None: (None, "cgroup v1 at /x: denied"))
    assert choose_isolation("auto", allow_weaker=False) == ("bwrap", None)
    level, refusal = choose_isolation("bwrap+cgroup", allow_weaker=False)
    assert level == "bwrap" and refusal is not None
    assert "no cgroup for whole-program limits (cgroup v1 at /x: denied" in refusal
    assert "sandbox.cgroup_parent" in refusal


@pytest.mark.parametrize(("version", "root", "blocked", "said"), [
    ((0, 6, 1), True, None, "bubblewrap 0.6.1 is older than 0.7"),
    ((0, 7, 0), False, None, "bubblewrap 0.7.0 is older than 0.8"),
    ((0, 8, 0), False, "user.max_user_namespaces = 0", "unprivileged user namespaces are off (user.max_user_namespaces = 0)"),
])
def test_why_bubblewrap_does_not_run_is_named(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, ...], root: bool, blocked: str | None, said: str,
) -> None:
    monkeypatch.setattr(probe, "available_levels", lambda cgroup_parent=None: ("process",))
    monkeypatch.setattr(probe, "bwrap_path", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(probe, "bwrap_version", lambda: version)
    monkeypatch.setattr(probe, "userns_blocked", lambda: blocked)
    monkeypatch.setattr(probe.os, "geteuid", lambda: 0 if root else 1000)
    _, refusal = choose_isolation("auto", allow_weaker=False)
    assert refusal is not None and said in refusal and "EMR:" in refusal, refusal


def test_unknown_level_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="isolation"):
        choose_isolation("docker", allow_weaker=False)


# --- real runs ----------------------------------------------------------------------------

# A sandbox precondition (tests/conftest.py decides: a skip, or under
# SELFALIGN_REQUIRE_SANDBOX=1 a failure).
needs_sandbox = pytest.mark.sandbox(
    None if available_levels() else f"no isolation level runs a program here; {lacking(FULL)}")


def run(program: str, limits: Limits = FAST, **kwargs):
    return run_program(program, limits, **kwargs)


@needs_sandbox
def test_probe_names_the_strongest_working_level() -> None:
    assert probe_isolation() == available_levels()[-1]


@needs_sandbox  # (with no level here: one case, "process", for the mark to fail or skip)
@pytest.mark.parametrize("level", available_levels() or (probe_isolation(),))
def test_pass_and_fail_at_every_available_level(level: str) -> None:
    program = "def inc(x):\n    return x + 1\n\nassert inc(1) == 2\nprint('checked')\n"
    passed = run(program, isolation=level)
    assert (passed.status, passed.passed, passed.exit_code) == ("pass", True, 0)
    assert passed.isolation == level and passed.stdout_tail == "checked\n"
    failed = run(program + "assert inc(2) == 4, 'inc is wrong'\n", isolation=level)
    assert (failed.status, failed.passed, failed.exit_code) == ("fail", False, 1)
    assert "AssertionError: inc is wrong" in failed.stderr_tail


@needs_sandbox
def test_errors_are_fails_with_their_traceback() -> None:
    outcome = run("def f(:\n    pass\n")
    assert outcome.status == "fail" and "SyntaxError" in outcome.stderr_tail
    outcome = run("import no_such_module_here\n")
    assert outcome.status == "fail" and "ModuleNotFoundError" in outcome.stderr_tail


@needs_sandbox
def test_wall_timeout() -> None:
    outcome = run("import time\ntime.sleep(60)\n", Limits(wall_seconds=1.0))
    assert outcome.status == "timeout" and "wall" in outcome.detail
    assert 1.0 <= outcome.duration_s < 5.0


@needs_sandbox
def test_cpu_timeout() -> None:
    outcome = run("while True:\n    pass\n", Limits(cpu_seconds=1, wall_seconds=30.0))
    assert outcome.status == "timeout" and "CPU" in outcome.detail


@needs_sandbox
def test_memory() -> None:
    program = "blocks = []\nwhile True:\n    blocks.append(bytearray(32 << 20))\n"
    outcome = run(program, Limits(memory_bytes=256 << 20, wall_seconds=20.0))
    assert outcome.status == "memory" and "MemoryError" in outcome.stderr_tail


@needs_sandbox
def test_crash() -> None:
    outcome = run("import ctypes\nctypes.string_at(0)\n")
    assert outcome.status == "crash" and outcome.exit_code == -signal.SIGSEGV


@needs_sandbox
def test_marker_is_not_in_the_output_and_hash_seed_is_fixed() -> None:
    program = "import sys\nprint(hash('selfalign'))\nprint('to stderr', file=sys.stderr)\n"
    first, second = run(program), run(program)
    assert first.passed and second.passed
    assert first.stdout_tail == second.stdout_tail == f"{hash_with_seed_zero()}\n"
    assert first.stderr_tail == "to stderr\n"


def hash_with_seed_zero() -> int:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "print(hash('selfalign'))"], capture_output=True, text=True,
        env={"PYTHONHASHSEED": "0"}, check=True,
    )
    return int(done.stdout)


@needs_sandbox
def test_a_harness_that_cannot_start_is_a_sandbox_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sandbox.run, "python_command",
                        lambda *args, **kwargs: [sys.executable, "-c", "raise SystemExit(3)"])
    outcome = run("pass")
    assert outcome.status == "sandbox-error" and not outcome.passed


@needs_sandbox
def test_temp_dir_is_removed(tmp_path) -> None:
    outcome = run("open('left.txt', 'w').write('x')\nimport os\nos.mkdir('d')\nos.chmod('d', 0)\n",
                  work_root=tmp_path)
    assert outcome.passed
    assert list(tmp_path.iterdir()) == []
