"""Nothing a program leaves behind may harm the host: links into host directories, daemons
still writing, trees deeper than any recursion or descriptor limit, and more memory or
disk than the program as a whole was given.

The link and depth attacks matter most below bwrap, where the program's dir is a host
directory the runner (often root) removes; they run at every level this machine has.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tests.security.helpers import (
    HOST_DIR_LEVELS,
    LEVEL,
    LIMITS,
    needs_sandbox,
    needs_whole_program_limits,
    new_token,
    run_hostile,
    survivors,
)
from udfs.sandbox import Limits, Outcome
from udfs.sandbox.cleanup import remove_tree

pytestmark = needs_sandbox

# Below bwrap the program's dir is on the host; as a user the runner shares the
# program's uid there, which these levels do not claim to contain (helpers.py).
# "LEVEL+hand-back" runs the strongest level with a file to hand back, where the
# harness copies files out of the run after every other process of it is dead.
HAND_BACK = "+hand-back"
MODES = [*HOST_DIR_LEVELS, LEVEL, LEVEL + HAND_BACK]


def run_in_mode(mode: str, body: str, token: str, work: Path, limits: Limits = LIMITS) -> Outcome:
    hand_back = {"keep": ("out.txt",), "into": work.parent} if mode.endswith(HAND_BACK) else {}
    return run_hostile(body, token, limits, level=mode.removesuffix(HAND_BACK), work_root=work,
                       **hand_back)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A host directory the program will point links at; it must come out untouched."""
    directory = tmp_path / "canary"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    (directory / "keep.txt").write_text("host data")
    os.chmod(directory / "keep.txt", 0o644)
    return directory


def assert_untouched(canary: Path) -> None:
    assert stat.S_IMODE(os.stat(canary).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(canary / "keep.txt").st_mode) == 0o644
    assert (canary / "keep.txt").read_text() == "host data"
    assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"]


LINKING_DAEMONS = """
import os, time
for n in range(4):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.makedirs("d", exist_ok=True)
            os.chmod("d", 0o700)
            i, end = 0, time.time() + 5
            while time.time() < end:
                try:
                    os.symlink(CANARY, f"d/{n}-{i}")
                    os.symlink(CANARY + "/keep.txt", f"d/f{n}-{i}")
                except OSError:
                    pass
                i += 1
            os._exit(0)
        os._exit(0)
time.sleep(0.2)
"""


@pytest.mark.parametrize("mode", MODES)
def test_daemons_planting_links_to_host_dirs_harm_nothing(mode: str, tmp_path: Path, canary: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    token = new_token()
    outcome = run_in_mode(mode, LINKING_DAEMONS.replace("CANARY", repr(str(canary))), token, work)
    # No settling time: every process of the run is gone when run_program returns.
    assert survivors(token) == [], outcome
    assert outcome.status == "pass", outcome
    assert list(work.iterdir()) == []
    assert_untouched(canary)


DEEP_TREE = """
import os
for depth in range(3000):
    os.mkdir("d")
    os.chdir("d")
    if depth == 1200:
        for i in range(12):
            with open(f"big{i}", "wb") as out:
                out.write(b"x" * (1 << 20))
os.symlink(CANARY, "link")
os.mkdir("locked")
os.chmod("locked", 0)
os.chmod(".", 0o500)
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_tree_deeper_than_any_limit_is_removed_and_nothing_raises(
    mode: str, tmp_path: Path, canary: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    limits = replace(LIMITS, disk_bytes=64 << 20, wall_seconds=30.0, file_size_bytes=2 << 20)
    outcome = run_in_mode(mode, DEEP_TREE.replace("CANARY", repr(str(canary))), new_token(),
                          work, limits)
    assert outcome.status == "pass", outcome
    assert list(work.iterdir()) == []
    assert_untouched(canary)


def test_remove_tree_never_follows_links_and_needs_no_recursion(tmp_path: Path, canary: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    os.symlink(canary, root / "top-link")
    os.symlink(canary / "keep.txt", root / "file-link")
    flags = os.O_RDONLY | os.O_DIRECTORY
    fd = os.open(root, flags)
    for depth in range(3000):  # deeper than the recursion limit and the open-file limit
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", flags, dir_fd=fd)
        if depth in (10, 2000):
            os.chmod("d", 0, dir_fd=fd)  # no permissions on the way down
        os.close(fd)
        fd = child
    os.symlink(canary, "deep-link", dir_fd=fd)
    os.mkdir("locked", dir_fd=fd)
    os.chmod("locked", 0, dir_fd=fd)
    os.close(fd)
    assert remove_tree(root) is True
    assert not root.exists()
    assert_untouched(canary)


@needs_whole_program_limits
def test_memory_is_limited_for_the_program_as_a_whole() -> None:
    # 11 processes x 150 MB: each is under the per-process limit, together 8x over.
    program = """
import os, time
children = []
for _ in range(10):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (150 << 20)
        time.sleep(1.5)
        os._exit(0)
    children.append(pid)
block = b"x" * (150 << 20)
for pid in children:
    os.waitpid(pid, 0)
"""
    limits = replace(LIMITS, memory_bytes=200 << 20, wall_seconds=20.0)
    token = new_token()
    outcome = run_hostile(program, token, limits)
    assert outcome.status == "memory", outcome
    assert survivors(token) == []


@needs_whole_program_limits
def test_disk_is_limited_for_the_program_as_a_whole(tmp_path: Path) -> None:
    # 400 files of 1 MiB: each under the file-size limit, together far over the disk.
    program = """
for i in range(400):
    with open(f"part{i}", "wb") as out:
        out.write(b"x" * (1 << 20))
"""
    work = tmp_path / "work"
    work.mkdir()
    outcome = run_hostile(program, new_token(), work_root=work)
    assert outcome.status == "fail", outcome
    assert "No space left on device" in outcome.stderr_tail
    assert list(work.iterdir()) == []  # nothing of it ever reached the host's disk
