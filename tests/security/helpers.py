"""Shared pieces of the sandbox security tests: real hostile programs, real processes.

Every hostile program first renames itself (prctl PR_SET_NAME, inherited by its
forks) to a token unique to the test, so `survivors(token)` can scan the host's
/proc, which shows every process of every pid namespace, for anything left behind.
"""

from __future__ import annotations

import os
import secrets
import textwrap
import time
from pathlib import Path

import pytest

from udfs.sandbox import Limits, Outcome, available_levels, probe_isolation, run_program
from udfs.sandbox.levels import FULL, LEVELS
from udfs.sandbox.probe import _missing

# The level under test: the strongest here, or SELFALIGN_TEST_ISOLATION=netns|process
# to check what a weaker level still promises (the marks below say what it does not).
CHOSEN = os.environ.get("SELFALIGN_TEST_ISOLATION")
LEVEL = CHOSEN or probe_isolation()
WORKS = LEVEL in available_levels()
AS_ROOT = os.geteuid() == 0

# Small enough that a contained bomb costs little on a shared 2-core box.
LIMITS = Limits(cpu_seconds=2, wall_seconds=6.0, memory_bytes=256 << 20, max_processes=24,
                file_size_bytes=1 << 20, disk_bytes=32 << 20, open_files=64,
                output_bytes=256 << 10)


def lacking(level: str) -> str:
    """Why this machine does not run `level`, in the sandbox's own words (one line)."""
    if level in ("bwrap", FULL):
        return f"no {level!r} here: {_missing(level, None)}"
    return f"no {level!r} here: its probe fails (udfs/sandbox/probe.py)"


# Every precondition of a sandbox test is a `sandbox` mark: what it checks cannot be
# checked here. tests/conftest.py (sandbox_precondition) decides what a gap does: a skip,
# or a failure under SELFALIGN_REQUIRE_SANDBOX=1 (make test).
def needs(least: str, what: str, root_suffices: bool = False) -> pytest.MarkDecorator:
    """The test checks `what`, which the level under test gives from `least` up (or, with
    root_suffices, as root at any level)."""
    if LEVELS.index(LEVEL) >= LEVELS.index(least) or (root_suffices and AS_ROOT):
        return pytest.mark.sandbox(None)
    if CHOSEN:  # a weaker level asked for: its skips are what it does not promise
        return pytest.mark.sandbox(f"{what} (SELFALIGN_TEST_ISOLATION={CHOSEN})", deliberate=True)
    return pytest.mark.sandbox(f"{what}; {lacking(least)}")


# (Where nothing runs at all and no level was chosen: why the strongest does not.)
needs_sandbox = pytest.mark.sandbox(
    None if WORKS else f"isolation level {LEVEL!r} cannot run a program here; "
                       f"{lacking(LEVEL if CHOSEN else FULL)}")
# Where the program runs as a uid of its own (root) or in a pid namespace, it can
# neither reach the test's processes nor leave any behind; plain process level as an
# ordinary user promises neither.
needs_own_uid_or_pidns = needs("netns", "process level as non-root shares the test's uid",
                               root_suffices=True)
# Host files next to its temp dir are out of reach under bwrap (not mounted) or as
# root (the program has a uid of its own); netns or process as a user share its uid.
needs_bwrap_or_own_uid = needs("bwrap", "the program has the test's uid and sees its files",
                               root_suffices=True)
needs_netns = needs("netns", "process level has the host network")
needs_bwrap = needs("bwrap", "only bwrap hides the host file system")
needs_cgroup = needs(FULL, "needs the run's own cgroup")
# Memory and CPU for the program as a whole: the cgroup at bwrap+cgroup, the runner's
# polling at bwrap (udfs/sandbox/meter.py); below bwrap, per process only.
needs_whole_program_limits = needs("bwrap", "whole-program limits need bwrap (polled) or a cgroup")

# The levels below bwrap whose program dir is a host dir the runner (root) handles, where
# the program has a uid of its own: process and netns, where this machine has them.
# (They need an interpreter the run's uid can read: not one under /root.)
HOST_DIR_LEVELS = [level for level in ("process", "netns") if level in available_levels() and AS_ROOT]


def new_token() -> str:
    return "sbx" + secrets.token_hex(6)  # 15 characters: the most a comm holds


HEADER_LINES = 2  # what `hostile` puts before the body


def hostile(body: str, token: str) -> str:
    """The program text: rename to the token, then the test's body."""
    header = (
        "import ctypes\n"
        f"ctypes.CDLL(None).prctl(15, {token!r}.encode(), 0, 0, 0)  # PR_SET_NAME\n"
    )
    return header + textwrap.dedent(body)


def run_hostile(body: str, token: str, limits: Limits = LIMITS, level: str = LEVEL,
                **kwargs) -> Outcome:
    outcome = run_program(hostile(body, token), limits, isolation=level, **kwargs)
    assert outcome.isolation == level
    return outcome


def survivors(token: str) -> list[int]:
    """Pids on the host whose name or command line holds the token."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            seen = (entry / "comm").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if token.encode() in seen:
            found.append(int(entry.name))
    return found


def assert_none_survive(token: str, settle_s: float = 1.0) -> None:
    """Nothing named after the token is left; processes being reaped get settle_s."""
    deadline = time.monotonic() + settle_s
    while (left := survivors(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], f"processes outlived the sandbox: {left}"
