"""Files handed to a run (`give`) and back from it (`keep`): the caller's files stay as
they were, what comes back is bounded and flat, and never a link or a special file."""

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
    needs_bwrap,
    needs_sandbox,
    new_token,
    run_hostile,
)
from udfs.sandbox import run_program

pytestmark = needs_sandbox

# Every level this machine runs that hands files back: bwrap's stream out of its tmpfs,
# and below bwrap (as root, with a uid of its own) the host dir.
LEVELS = [*HOST_DIR_LEVELS, LEVEL]


def test_a_given_file_is_readable_inside_and_unchanged_outside(tmp_path: Path) -> None:
    given = tmp_path / "expected.txt"
    given.write_text("private numbers")
    os.chmod(given, 0o600)
    outcome = run_hostile("print(open('expected.txt').read())\n", new_token(),
                          give={"expected.txt": given})
    assert outcome.status == "pass", outcome
    assert "private numbers" in outcome.stdout_tail
    assert stat.S_IMODE(os.stat(given).st_mode) == 0o600
    assert given.read_text() == "private numbers"


@pytest.mark.parametrize("level", LEVELS)
def test_kept_files_come_back(level: str, tmp_path: Path) -> None:
    into = tmp_path / "into"
    into.mkdir()
    outcome = run_hostile("open('out.txt', 'w').write('result 42')\n", new_token(),
                          level=level, keep=("out.txt", "missing.txt"), into=into)
    assert outcome.status == "pass", outcome
    assert outcome.kept == ("out.txt",)
    assert (into / "out.txt").read_text() == "result 42"
    assert sorted(p.name for p in into.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("level", LEVELS)
def test_kept_files_are_whole_when_the_program_left_them_open(level: str, tmp_path: Path) -> None:
    # No close, no flush, stdout redirected to a file: plain Python's exit flushes them.
    program = """
    import sys
    out = open("data.txt", "w")
    out.write("x" * 100)
    sys.stdout = open("printed.txt", "w")
    print("result 42")
    """
    into = tmp_path / "into"
    into.mkdir()
    outcome = run_hostile(program, new_token(), level=level, keep=("data.txt", "printed.txt"),
                          into=into)
    assert outcome.status == "pass", outcome
    assert (into / "data.txt").read_text() == "x" * 100
    assert (into / "printed.txt").read_text() == "result 42\n"


@needs_bwrap
def test_a_kept_file_near_the_memory_limit_comes_back(tmp_path: Path) -> None:
    # The file is on the run's tmpfs (its memory); handing it back adds one copy, not more.
    into = tmp_path / "into"
    into.mkdir()
    limits = replace(LIMITS, memory_bytes=96 << 20, disk_bytes=32 << 20, file_size_bytes=32 << 20,
                     wall_seconds=20.0)
    outcome = run_hostile("open('out.bin', 'wb').write(b'x' * (28 << 20))\n", new_token(), limits,
                          keep=("out.bin",), into=into)
    assert outcome.status == "pass", outcome
    assert (into / "out.bin").stat().st_size == 28 << 20


@needs_bwrap
def test_a_run_handing_files_back_is_bounded_by_its_disk(tmp_path: Path) -> None:
    work, into = tmp_path / "work", tmp_path / "into"
    work.mkdir()
    into.mkdir()
    program = """
    for i in range(6):
        with open(f"part{i}", "wb") as out:
            out.write(b"x" * (8 << 20))
    open("out.txt", "w").write("done")
    """
    limits = replace(LIMITS, disk_bytes=8 << 20, file_size_bytes=64 << 20, memory_bytes=512 << 20,
                     wall_seconds=20.0)
    outcome = run_hostile(program, new_token(), limits, work_root=work, keep=("out.txt",),
                          into=into)
    assert outcome.status == "fail" and "No space left on device" in outcome.stderr_tail, outcome
    assert list(into.iterdir()) == []
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("level", LEVELS)
def test_links_and_special_files_are_never_handed_back(level: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    into = tmp_path / "into"
    into.mkdir()
    program = f"""
    import os
    os.symlink({str(secret)!r}, "link.txt")
    os.symlink("/etc/hostname", "abs.txt")
    os.mkfifo("fifo.txt")
    os.mkdir("dir.txt")
    open("real.txt", "w").write("mine")
    os.link("real.txt", "hard.txt")
    """
    outcome = run_hostile(program, new_token(), level=level, into=into,
                          keep=("link.txt", "abs.txt", "fifo.txt", "dir.txt", "hard.txt"))
    assert outcome.status == "pass", outcome
    assert outcome.kept == ()
    assert list(into.iterdir()) == []
    assert secret.read_text() == "host data"


@pytest.mark.parametrize("name", ["sub/out.txt", "../out.txt", "..", ".", "", "/etc/passwd"])
def test_only_flat_names_can_be_kept(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        run_program("pass\n", LIMITS, isolation=LEVEL, keep=(name,), into=tmp_path)
