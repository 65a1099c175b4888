"""Remove a directory a hostile program wrote, as root, without ever leaving it.

A program's dir may hold links to host directories, directories thousands of levels
deep, and directories without read or search permission. `remove_tree`:
- never follows a link: every step is relative to a directory descriptor, entries are
  opened with O_NOFOLLOW, and a link is unlinked as the link it is;
- cannot recurse: the walk is a loop over an explicit stack, holding one directory
  descriptor at a time (so depth is bounded by memory, not by open files or the stack);
- changes permissions only on what it opened (an O_PATH descriptor of the entry itself,
  through /proc/self/fd), never on a path that could be swapped for a link;
- checks, when it climbs back with "..", that it arrived where it came from.

It must start only once every process of the run is gone (the runner waits for the
cgroup or the pid namespace to empty first); the checks above make a late writer a
leftover, never a way out.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", 0) | os.O_NOFOLLOW | os.O_CLOEXEC


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _open_subdir(parent: int, name: str) -> int | None:
    """A descriptor of the directory `name` in `parent`; None if it is anything else."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        pass  # no read/search permission (we are not root): grant it on the entry itself
    except OSError:
        return None
    try:
        handle = os.open(name, _PATH_FLAGS, dir_fd=parent)
    except OSError:
        return None
    try:
        if not stat.S_ISDIR(os.fstat(handle).st_mode):
            return None
        os.chmod(f"/proc/self/fd/{handle}", 0o700)  # the inode we hold, not a path
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(handle)


def _unlink(parent: int, name: str) -> bool:
    """Unlink a non-directory entry; False when it is a directory (or already gone)."""
    try:
        os.unlink(name, dir_fd=parent)
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EISDIR, errno.EPERM):
            return False
        raise


def remove_tree(path: str | Path) -> bool:
    """Remove `path` and everything below it; True when it is gone. Never raises."""
    try:
        top = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("sandbox: cannot open %s for removal: %s", path, exc)
        return False
    try:
        _empty(top)
    except OSError as exc:
        log.warning("sandbox: left part of %s: %s", path, exc)
    finally:
        os.close(top)
    try:
        os.rmdir(path)
        return True
    except OSError as exc:
        log.warning("sandbox: cannot remove %s: %s", path, exc)
        return False


def _empty(top: int) -> None:
    """Empty the directory open as `top`, depth first, one open descriptor below it."""
    # One frame per directory on the way down: its identity, the name it has in its
    # parent, and the names still to look at.
    stack: list[tuple[tuple[int, int], str, list[str]]] = [(_identity(top), "", os.listdir(top))]
    current = os.dup(top)
    try:
        while stack:
            _, name, pending = stack[-1]
            if pending:
                entry = pending.pop()
                if _unlink(current, entry):
                    continue
                child = _open_subdir(current, entry)
                if child is None:
                    continue
                os.close(current)
                current = child
                stack.append((_identity(child), entry, os.listdir(child)))
                continue
            stack.pop()
            if not stack:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=current)
            os.close(current)
            current = parent
            if _identity(current) != stack[-1][0]:
                raise OSError(errno.ESTALE, "a directory moved during removal; stopped")
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=current)
    finally:
        os.close(current)
