"""What a run shares with the node it runs on: the kernel keyring of the process that
started it, the cgroup whose limit the node manager enforces, and the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from tests.security.helpers import (
    LEVEL,
    LIMITS,
    assert_none_survive,
    needs_cgroup,
    needs_sandbox,
    needs_whole_program_limits,
    new_token,
    run_hostile,
    survivors,
)
from tests.security.keyring import KEYCTL
from udfs.sandbox import Limits, Outcome, cgroup

REPO = Path(__file__).resolve().parents[2]

pytestmark = needs_sandbox

# Lists the keys of its session keyring (and of the runner's, joined by name), prints
# their payloads, then revokes them and clears the keyrings.
KEYRING_THIEF = """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
K = KEYCTL
def keyctl(*args):
    return libc.syscall(K, *args)
buf = ctypes.create_string_buffer(4096)
# The session keyring it was started with, then the runner's joined by its name.
for join in (False, True):
    ring = keyctl(1, ctypes.c_char_p(RING_NAME)) if join else -3
    if ring == -1:  # could not join
        continue
    size = keyctl(11, ctypes.c_long(ring), buf, 4096)
    for key in struct.unpack(f"{max(size, 0) // 4}i", buf.raw[:max(size, 0)]):
        got = keyctl(11, ctypes.c_long(key), buf, 4096)
        if got > 0:
            print("payload", buf.raw[:got])
        print("revoke", key, keyctl(3, ctypes.c_long(key)))
    print("clear", ring, keyctl(7, ctypes.c_long(ring)))
found = keyctl(10, ctypes.c_long(-3), b"user", b"selfalign-secret", 0)  # KEYCTL_SEARCH
print("search", found)
"""

# Runs in a process of its own, so the test's own keyring is never touched: plants a
# secret in a new session keyring, runs the thief, and reports what is left of it.
KEYRING_VICTIM = """
import json, sys
from tests.security.keyring import add_user_key, join_session_keyring, read_key
from tests.security.helpers import LIMITS, hostile
from udfs.sandbox import run_program
ring = join_session_keyring(RING_NAME)
key = add_user_key(b"selfalign-secret", b"s3cret-payload")
outcome = run_program(hostile(THIEF, TOKEN), LIMITS, isolation=LEVEL)
try:
    after = read_key(key).decode()
except OSError as exc:
    after = f"unreadable: {exc}"
print(json.dumps({"status": outcome.status, "stdout": outcome.stdout_tail,
                  "stderr": outcome.stderr_tail, "after": after}))
"""


def test_the_runners_session_keyring_is_out_of_reach() -> None:
    token = new_token()
    ring_name = b"selfalign-" + token.encode()
    thief = KEYRING_THIEF.replace("KEYCTL", str(KEYCTL)).replace("RING_NAME", repr(ring_name))
    script = (KEYRING_VICTIM.replace("RING_NAME", repr(ring_name))
              .replace("THIEF", repr(thief)).replace("TOKEN", repr(token))
              .replace("LEVEL", repr(LEVEL)))
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["status"] == "pass", report
    assert "s3cret" not in report["stdout"], report
    assert report["after"] == "s3cret-payload", report  # not revoked, not unlinked
    assert "search -1" in report["stdout"], report
    assert_none_survive(token)


def _controller_paths(text: str) -> dict[str, str]:
    """/proc/PID/cgroup as {controller or "" for v2: path}."""
    paths = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name.removeprefix("name=")] = path
    return paths


def _run_in_background(body: str, token: str, limits: Limits) -> tuple[threading.Thread, list[Outcome]]:
    outcomes: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(run_hostile(body, token, limits)))
    thread.start()
    return thread, outcomes


def _pid_of(token: str, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := survivors(token):
            return found[0]
        time.sleep(0.02)
    raise AssertionError("the program never started")


@needs_cgroup
def test_a_run_lies_under_the_runners_own_cgroup() -> None:
    """So the limit the node manager put on the runner's container bounds every run."""
    token = new_token()
    thread, outcomes = _run_in_background("import time\ntime.sleep(3)\n", token,
                                          limits=replace(LIMITS, wall_seconds=10.0))
    try:
        pid = _pid_of(token)
        run_paths = _controller_paths(Path(f"/proc/{pid}/cgroup").read_text())
    finally:
        thread.join()
    assert outcomes and outcomes[0].status == "pass", outcomes
    own = _controller_paths(Path("/proc/self/cgroup").read_text())
    # The controllers that hold a run's limits: v2's unified tree, or v1's memory (and
    # cpuacct, which counts its CPU).
    checked = [name for name in ("", "memory", "cpuacct") if name in own and own[name] != run_paths.get(name)]
    assert checked, (own, run_paths)
    for name in checked:
        mine = own[name].rstrip("/")
        assert run_paths[name].startswith(mine + "/"), (name, own[name], run_paths[name])


BUSY_EVERYWHERE = """
import os
for _ in range(7):
    if os.fork() == 0:
        break
while True:
    pass
"""


@needs_whole_program_limits
def test_cpu_is_limited_for_the_program_as_a_whole() -> None:
    # Eight busy processes, each far under a per-process limit of one CPU-second for
    # the wall time allowed: together they must stop at about one CPU-second.
    token = new_token()
    limits = replace(LIMITS, cpu_seconds=1, wall_seconds=20.0)
    hierarchy = cgroup.probe()[0] if LEVEL == "bwrap+cgroup" else None
    # Every run's cgroup is a child of this one, whose usage counts its children's.
    parent = cgroup.RunCgroup(hierarchy, hierarchy.parents) if hierarchy is not None else None
    before = parent.cpu_seconds() if parent is not None else 0.0
    outcome = run_hostile(BUSY_EVERYWHERE, token, limits)
    after = parent.cpu_seconds() if parent is not None else 0.0
    assert outcome.status == "timeout" and "CPU" in outcome.detail, outcome
    assert outcome.cpu_s is not None and 1.0 <= outcome.cpu_s < 1.6, outcome
    assert before is not None and after is not None and after - before < 1.6, (before, after)
    assert_none_survive(token)
