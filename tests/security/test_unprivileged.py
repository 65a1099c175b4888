"""The sandbox where executors are not root: as YARN's LinuxContainerExecutor runs a
container on EMR, as a user of no privilege with no cgroup of its own to delegate.

The tests drop to uid 65534 (setpriv) with a scrubbed environment and run there (1)
execute's sandbox path on real programs with the shipped EMR config, and (2) the
security tests that matter most without root and without a cgroup. The user needs a
Python it can read: this one where it can, else a system python3 of the same version
(this one may live under /root, which is 0700), with this interpreter's packages.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import sandbox_precondition
from tests.security.helpers import lacking
from udfs.sandbox.levels import bwrap_path
from udfs.sandbox.probe import userns_blocked

REPO = Path(__file__).resolve().parents[2]
UID = 65534  # nobody: no privilege, no cgroup it may write
SETPRIV = shutil.which("setpriv")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dropping to an unprivileged user needs root"),
    pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed"),
    pytest.mark.sandbox(None if bwrap_path() else lacking("bwrap")),
]

RunAs = Callable[..., subprocess.CompletedProcess[str]]


def _command(python: str, *args: str) -> list[str]:
    assert SETPRIV is not None
    return [SETPRIV, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", python, *args]


def _python_for(env: dict[str, str], cwd: str) -> tuple[str | None, str, bool]:
    """An interpreter of this version that the user can run, with this one's packages, and
    that its sandbox can run (bwrap binds it), or why there is none and whether the reason
    is the sandbox (the interpreter runs, bwrap does not: no unprivileged user namespaces)."""
    wanted = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = dict.fromkeys([sys.executable, f"/usr/bin/python{wanted}", "/usr/bin/python3",
                                f"/usr/local/bin/python{wanted}", "/usr/local/bin/python3"])
    why, sandbox = "no python3 found", False
    for python in candidates:
        if not os.path.exists(python):
            continue
        check = subprocess.run(
            _command(python, "-c", "import sys, pytest, jobs.stages.execute\n"
                                   "from udfs.sandbox import available_levels\n"
                                   "print('%d.%d' % sys.version_info[:2], *available_levels())"),
            env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
        )
        said = check.stdout.split()
        if check.returncode == 0 and said[:1] == [wanted]:
            if "bwrap" in said:
                return python, "", False
            why = (f"{python} runs as uid {UID}, bwrap does not (levels that work: "
                   f"{' '.join(said[1:]) or 'none'}; "
                   f"{userns_blocked() or 'bwrap cannot create its namespaces'})")
            sandbox = True
            continue
        if sandbox:
            continue  # an interpreter that runs, and the sandbox is what fails: keep that reason
        lines = (check.stderr or check.stdout).strip().splitlines()
        why = f"{python}: {lines[-1] if lines else 'exit code ' + str(check.returncode)}"
    return None, (f"no Python {wanted} that uid {UID} can run with this checkout and sandbox at "
                  f"bwrap; last tried {why}"), sandbox


@pytest.fixture(scope="module")
def run_as() -> Iterator[RunAs]:
    """Runs `python args...` as the unprivileged user in a dir of its own, as YARN would."""
    home = Path(tempfile.mkdtemp(prefix="selfalign-yarn-"))
    os.chown(home, UID, UID)
    packages = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(p)]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home),
        "TMPDIR": str(home), "PYTHONPATH": os.pathsep.join([str(REPO), *packages]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SELFALIGN_BENCHMARKS_DIR": os.environ.get("SELFALIGN_BENCHMARKS_DIR", ""),
    }
    try:
        python, why, sandbox = _python_for(env, str(home))
        if python is None:
            if sandbox:  # no unprivileged user namespaces: a sandbox precondition
                sandbox_precondition(why)  # fails under SELFALIGN_REQUIRE_SANDBOX=1, else skips
            pytest.skip(why)  # no interpreter this user can run: not the sandbox's doing

        def run(*args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(_command(python, *args), env={**env, **extra}, cwd=str(REPO),
                                  capture_output=True, text=True, timeout=timeout, check=False)

        yield run
    finally:
        shutil.rmtree(home, ignore_errors=True)


# Each program: code, then tests, as a response has them (execute.program_of joins them).
ADD = "def add(a, b):\n    return a + b\n"
NETWORK = """
import socket
def reach(port):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
"""
WRITE = """
def plant(path):
    try:
        with open(path, "w") as out:
            out.write("escaped")
        return True
    except OSError:
        return False
"""
HOG = """
import ctypes, os, time
ctypes.CDLL(None).prctl(15, b"TOKEN", 0, 0, 0)
def hog():
    for _ in range(5):  # 6 processes x 200 MiB: each under RLIMIT_AS, together 4.7x over
        if os.fork() == 0:
            break
    block = bytearray(200 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return len(block)
"""
BOMB = """
import ctypes, os, time
ctypes.CDLL(None).prctl(15, b"TOKEN", 0, 0, 0)
def bomb():
    children = 0
    try:
        for _ in range(500):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError:
        pass
    return children
"""

# Run as the user: the shipped EMR config's sandbox settings, through execute's own path
# (the level check its settings() makes, then execution_rows), with smaller limits.
EXECUTE = """
import json, os, socket, sys
from dataclasses import replace
from jobs.core.config import load_config
from jobs.stages import execute
from udfs.sandbox import choose_isolation

cfg = load_config(sys.argv[1]).sandbox
level, refusal = choose_isolation(cfg.isolation, cfg.allow_weaker, cfg.cgroup_parent)
plan = execute.SandboxPlan.from_config(cfg)
plan = replace(plan, limits=replace(plan.limits, memory_bytes=256 << 20, wall_seconds=10.0,
                                    cpu_seconds=5, max_processes=24))
outside = os.path.join(os.environ["HOME"], "planted")  # this user may write there
with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    programs = json.loads(sys.argv[2])
    records = [{"response_id": name, "instruction_id": "i", "code": code.replace("TOKEN", sys.argv[3]),
                "tests": tests.replace("PORT", str(port)).replace("OUTSIDE", repr(outside))}
               for name, (code, tests) in programs.items()]
    rows = list(execute.execution_rows(records, plan, workers=2))
    try:
        server.accept()[0].close()
        reached = True
    except BlockingIOError:
        reached = False
left = []
for entry in os.listdir("/proc"):
    try:
        with open(f"/proc/{entry}/comm", "rb") as handle:
            left += [entry] if sys.argv[3].encode() in handle.read() else []
    except OSError:
        pass
print(json.dumps({"level": level, "refusal": refusal, "reached": reached, "left": left,
                  "planted": os.path.exists(outside), "uid": os.getuid(),
                  "rows": {r["response_id"]: r for r in rows}}))
"""


def test_execute_runs_the_shipped_emr_config_as_an_unprivileged_user(run_as: RunAs) -> None:
    programs = {
        "pass": (ADD, "assert add(1, 2) == 3\n"),
        "fail": (ADD, "assert add(1, 2) == 4\n"),
        "network": (NETWORK, "assert reach(PORT) is False\n"),
        "write": (WRITE, "assert plant(OUTSIDE) is False\n"),
        "hog": (HOG, "assert hog() > 0\n"),
        "bomb": (BOMB, "assert bomb() < 24\n"),
    }
    token = "sbxunpriv" + os.urandom(3).hex()
    done = run_as("-c", EXECUTE, str(REPO / "conf/emr/emr.yaml"), json.dumps(programs), token)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["uid"] == UID
    assert (result["level"], result["refusal"]) == ("bwrap", None)  # auto, no cgroup
    rows = result["rows"]
    statuses = {name: row["status"] for name, row in rows.items()}
    assert statuses == {"pass": "pass", "fail": "fail", "network": "pass", "write": "pass",
                        "hog": "memory", "bomb": "pass"}, rows
    assert {row["isolation"] for row in rows.values()} == {"bwrap"}
    assert not result["reached"] and not result["planted"]
    # Stopped well before its 1.2 GB: what the polling saw when it killed the run (the
    # overshoot is what 6 processes fault in between two polls on a busy machine).
    seen = int(rows["hog"]["detail"].split(": ")[-1].split()[0])
    assert 256 << 20 <= seen < 2 * (256 << 20), rows["hog"]["detail"]
    assert result["left"] == []


# What matters most without root and without a cgroup: network, files, other processes,
# the keyring, and the resource bounds that now rest on RLIMIT_NPROC in a user namespace
# and on polling.
SELECTED = [
    "tests/security/test_escape.py",
    "tests/security/test_containment.py::test_fork_count_is_capped_even_as_root",
    "tests/security/test_containment.py::test_fork_count_stays_capped_from_a_nested_user_namespace",
    "tests/security/test_containment.py::test_fork_bomb",
    "tests/security/test_containment.py::test_memory_bomb",
    "tests/security/test_containment.py::test_daemon_does_not_outlive_the_run",
    "tests/security/test_containment.py::test_killing_its_parent_leaves_the_caller_alive",
    "tests/security/test_host_safety.py::test_memory_is_limited_for_the_program_as_a_whole",
    "tests/security/test_host_safety.py::test_disk_is_limited_for_the_program_as_a_whole",
    "tests/security/test_node.py::test_the_runners_session_keyring_is_out_of_reach",
    "tests/security/test_node.py::test_cpu_is_limited_for_the_program_as_a_whole",
    "tests/security/test_files.py::test_links_and_special_files_are_never_handed_back",
]


def test_the_security_tests_that_matter_without_root_hold(run_as: RunAs) -> None:
    done = run_as("-m", "pytest", "-o", "addopts=", "-q", "-rs", "-p", "no:cacheprovider", *SELECTED,
                  timeout=300, SELFALIGN_TEST_ISOLATION="bwrap")
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0 and "passed" in summary, done.stdout[-4000:] + done.stderr[-2000:]
    assert "skipped" not in summary and "deselected" not in summary, done.stdout[-4000:]
