"""Files a run hands back to its caller (`keep`): flat names only, plain regular files
only, and never more than the run's disk.

At the bwrap levels the program's dir is a tmpfs that vanishes with the run: the
harness's supervisor, once every other process of the run is dead, copies the kept
files into a memfd as `name NUL size LF bytes` records, and `parse_records` reads them
back (whatever the stream holds, only the names asked for come out). Below bwrap the
dir is on the host and `read_kept` takes the files from it, never through a link.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names, or ValueError for one that is not a plain file name."""
    names = tuple(names)
    for name in names:
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise ValueError(f"sandbox: keep takes plain file names, not {name!r}")
    return names


def parse_records(data: bytes, wanted: Iterable[str]) -> dict[str, bytes]:
    """The files of a hand-back stream that were asked for; a malformed record ends it."""
    wanted = set(wanted)
    files: dict[str, bytes] = {}
    position = 0
    while position < len(data):
        name_end = data.find(b"\0", position)
        size_end = data.find(b"\n", name_end + 1) if name_end >= 0 else -1
        if size_end < 0:
            break
        try:
            name = data[position:name_end].decode("utf-8")
            size = int(data[name_end + 1:size_end])
        except ValueError:
            break
        body = data[size_end + 1:size_end + 1 + size]
        if size < 0 or len(body) != size:
            break
        if name in wanted and name not in files:
            files[name] = body
        position = size_end + 1 + size
    return files


def read_kept(directory: Path, names: Iterable[str], budget: int) -> dict[str, bytes]:
    """The named plain files of a host dir (no link, one hard link), `budget` bytes in all.

    Called only once every process of the run is gone, so nothing swaps a file meanwhile.
    """
    files: dict[str, bytes] = {}
    for name in names:
        try:
            fd = os.open(directory / name, _READ_FLAGS)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > budget:
                continue
            data = os.read(fd, info.st_size + 1)
            if len(data) == info.st_size:
                files[name] = data
                budget -= len(data)
        finally:
            os.close(fd)
    return files


def write_into(into: Path, files: dict[str, bytes]) -> tuple[str, ...]:
    """Write the handed-back files into the caller's dir; their names, in order given."""
    for name, data in files.items():
        fd = os.open(into / name, _WRITE_FLAGS, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    return tuple(files)
