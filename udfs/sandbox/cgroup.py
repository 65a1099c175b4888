"""One cgroup per run: memory and task limits for the program as a whole, an atomic kill
and a way to know that every process of the run is gone.

Two kinds of host, found once per process by `probe()`:
- cgroup v2 with the memory and pids controllers: runs are children of a parent cgroup
  whose subtree has both controllers, by default `selfalign.sandbox` under the hierarchy's
  root (root may enable controllers there), or a delegated cgroup named by
  `sandbox.cgroup_parent` / SELFALIGN_SANDBOX_CGROUP. memory.max and memory.swap.max=0,
  pids.max, memory.oom.group=1 (an OOM kill ends the whole program); killed with
  cgroup.kill, empty when cgroup.events says `populated 0`.
- cgroup v1 with a writable memory hierarchy: memory.limit_in_bytes (and memsw when
  swap is accounted); killed by signalling each member through a pidfd checked to be in
  the run's cgroup; empty when cgroup.procs is. Tasks are not put in a v1 pids cgroup:
  moving a process into a v1 cgroup costs an RCU grace period (~20 ms here, per
  hierarchy), and RLIMIT_NPROC already counts the whole program's tasks, as they all
  have the run's own uid (as root) or live in its own user namespace.

A process joins before it can fork (the runner starts the sandbox behind a shell that
waits for a go-ahead once its pid is in the cgroup), so everything it starts is inside.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PARENT_NAME = "selfalign.sandbox"
PARENT_ENV = "SELFALIGN_SANDBOX_CGROUP"
_EMPTY_POLL_S = 0.002


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _v2_controllers(directory: Path) -> set[str]:
    try:
        return set((directory / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


@dataclass(frozen=True)
class Hierarchy:
    """Where run cgroups are made."""

    version: int
    parents: tuple[Path, ...]  # (parent,): the v2 cgroup, or the v1 memory cgroup

    def describe(self) -> str:
        return f"cgroup v{self.version} under {', '.join(map(str, self.parents))}"


def _v2_parent(parent: Path, own: bool) -> Path:
    """Make `parent` a cgroup whose children get memory and pids; raise OSError if not."""
    needed = {"memory", "pids"}
    if own:
        parent.mkdir(exist_ok=True)
        # The hierarchy's root may delegate with processes in it; `parent` has none.
        above = parent.parent
        missing = needed - set((above / "cgroup.subtree_control").read_text().split())
        if missing:
            _write(above / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
    if not needed <= _v2_controllers(parent):
        raise OSError(f"{parent} lacks the memory/pids controllers")
    missing = needed - set((parent / "cgroup.subtree_control").read_text().split())
    if missing:
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
    return parent


@functools.cache
def probe(configured: str | None = None) -> tuple[Hierarchy | None, str]:
    """(where runs get cgroups, or None; a line saying what was found or why not)."""
    wanted = configured or os.environ.get(PARENT_ENV) or None
    reasons = []
    if (ROOT / "cgroup.controllers").exists():  # unified (v2-only) hierarchy
        parent = Path(wanted) if wanted else ROOT / PARENT_NAME
        try:
            found = Hierarchy(2, (_v2_parent(parent, own=not wanted),))
            _try_child(found)
            return found, found.describe()
        except OSError as exc:
            reasons.append(f"cgroup v2 at {parent}: {exc}")
    else:
        memory = ROOT / "memory"
        if (memory / "cgroup.procs").exists():
            parent = memory / (wanted.strip("/") if wanted else PARENT_NAME)
            try:
                parent.mkdir(exist_ok=True)
                found = Hierarchy(1, (parent,))
                _try_child(found)
                return found, found.describe()
            except OSError as exc:
                reasons.append(f"cgroup v1 at {memory}: {exc}")
        else:
            reasons.append(f"no cgroup v2 controllers and no v1 memory hierarchy under {ROOT}")
    return None, "; ".join(reasons)


def _try_child(hierarchy: Hierarchy) -> None:
    """Make and remove one run cgroup with small limits, so a probe that passes is true."""
    group = RunCgroup.create(hierarchy, memory_bytes=64 << 20, max_processes=8)
    group.remove()


class RunCgroup:
    """The cgroup(s) of one run."""

    def __init__(self, hierarchy: Hierarchy, dirs: tuple[Path, ...]) -> None:
        self.hierarchy = hierarchy
        self.dirs = dirs

    @classmethod
    def create(cls, hierarchy: Hierarchy, memory_bytes: int, max_processes: int) -> RunCgroup:
        name = "run-" + secrets.token_hex(8)
        dirs = tuple(parent / name for parent in hierarchy.parents)
        made: list[Path] = []
        try:
            for directory in dirs:
                directory.mkdir()
                made.append(directory)
            group = cls(hierarchy, dirs)
            group._limit(memory_bytes, max_processes)
            return group
        except OSError:
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise

    def _limit(self, memory_bytes: int, max_processes: int) -> None:
        if self.hierarchy.version == 2:
            (group,) = self.dirs
            _write(group / "memory.max", str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):  # no swap accounting on this host
                _write(group / "memory.swap.max", "0")
            with contextlib.suppress(FileNotFoundError):
                _write(group / "memory.oom.group", "1")
            _write(group / "pids.max", str(max_processes))
            return
        (memory,) = self.dirs
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():  # only with swap accounting on; must not be below the limit
            _write(swap, str(memory_bytes))

    def add(self, pid: int) -> None:
        for directory in self.dirs:
            _write(directory / "cgroup.procs", str(pid))

    def members(self) -> list[int]:
        pids: set[int] = set()
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return sorted(pids)

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the run's memory limit."""
        if self.hierarchy.version == 2:
            source = self.dirs[0] / "memory.events"
            key = "oom_kill"
        else:
            source = self.dirs[0] / "memory.oom_control"
            key = "oom_kill"
        try:
            for line in source.read_text().splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == key:
                    return int(words[1])
        except (OSError, ValueError):
            pass
        if self.hierarchy.version == 1:  # kernels before 4.13 count no kills: count hits
            with contextlib.suppress(OSError, ValueError):
                return int((self.dirs[0] / "memory.failcnt").read_text()) and 1
        return 0

    def kill(self) -> None:
        """SIGKILL every member, including any that fork meanwhile (pids.max bounds them)."""
        if self.hierarchy.version == 2:
            try:
                _write(self.dirs[0] / "cgroup.kill", "1")
                return
            except OSError:
                pass  # kernels before 5.14: signal one by one
        for _ in range(1000):
            members = self.members()
            if not members:
                return
            for pid in members:
                self._kill_member(pid)

    def _kill_member(self, pid: int) -> None:
        # Through a pidfd, after checking membership: a bare pid could be reused by a
        # host process between reading cgroup.procs and the kill.
        try:
            handle = os.pidfd_open(pid)
        except OSError:
            return
        try:
            if str(pid) in (self.dirs[0] / "cgroup.procs").read_text().split():
                signal.pidfd_send_signal(handle, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(handle)

    def wait_empty(self, timeout_s: float) -> bool:
        """True once no process is left in the run's cgroup(s)."""
        deadline = time.monotonic() + timeout_s
        while self.members():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_EMPTY_POLL_S)
        return True

    def remove(self) -> None:
        for directory in self.dirs:
            for _ in range(100):  # a member may still be in the last steps of exiting
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
            else:
                log.warning("sandbox: could not remove cgroup %s", directory)
