"""One cgroup per run: memory, task and CPU limits for the program as a whole, an atomic
kill and a way to know that every process of the run is gone.

Where runs go: under the cgroup of the process that starts them (its container on a
YARN, Kubernetes or Databricks node), in a child `selfalign.sandbox`, so whatever limit
the node manager put on that container still bounds every run at once; or under a
delegated cgroup named by `sandbox.cgroup_parent` / SELFALIGN_SANDBOX_CGROUP (v2: its
path; v1: a path under each hierarchy's root). The own cgroup is read from
/proc/self/cgroup and located through /proc/self/mountinfo (a container may see its
hierarchy's root mounted at /sys/fs/cgroup).

Two kinds of host, found once per process by `probe()`:
- cgroup v2 with the memory and pids controllers: memory.max and memory.swap.max=0,
  pids.max, memory.oom.group=1 (an OOM kill ends the whole program); CPU from cpu.stat
  (there in every v2 cgroup, no controller needed); killed with cgroup.kill, empty when
  cgroup.events says `populated 0`. A v2 cgroup that holds processes cannot give
  controllers to children, so when the own cgroup has none to give, its processes move
  into a leaf child `selfalign.host` first (as Docker-in-Docker's entrypoint does).
- cgroup v1 with writable memory and cpuacct hierarchies: memory.limit_in_bytes (and
  memsw when swap is accounted), CPU from cpuacct.usage; killed by signalling each
  member through a pidfd checked to be in the run's cgroup; empty when cgroup.procs is.
  Tasks are not put in a v1 pids cgroup: RLIMIT_NPROC already counts the whole
  program's tasks, as they all have the run's own uid (as root) or live in its own user
  namespace.

A process joins before it can fork, so everything it starts is inside: the runner starts
the sandbox behind a shell that moves itself in (v1: writing 0 to each `tasks` file,
which skips the kernel's global lock) or waits for a go-ahead once the runner has put
its pid there (v2).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PARENT_NAME = "selfalign.sandbox"
HOST_LEAF = "selfalign.host"  # v2: where the own cgroup's processes move to make room
PARENT_ENV = "SELFALIGN_SANDBOX_CGROUP"
_EMPTY_POLL_S = 0.002
_V2_CONTROLLERS = {"memory", "pids"}
_V1_CONTROLLERS = ("memory", "cpuacct")  # in the order of RunCgroup.dirs


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
    parents: tuple[Path, ...]  # v2: (the cgroup,); v1: (memory cgroup, cpuacct cgroup)

    def describe(self) -> str:
        return f"cgroup v{self.version} under {', '.join(map(str, self.parents))}"


# --- where this process's own cgroup is ----------------------------------------------------

def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def own_cgroup_dir(controller: str | None, cgroups: str, mountinfo: str) -> Path | None:
    """The directory of this process's cgroup for a v1 `controller`, or in the v2 tree
    (None), from the texts of /proc/self/cgroup and /proc/self/mountinfo; None if not
    mounted here."""
    own = None
    for line in cgroups.splitlines():
        number, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else []
        if (controller is None and number == "0" and not names) or controller in names:
            own = path
            break
    if own is None:
        return None
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts, super_parts = fields.split(), tail.split()
        if len(parts) < 5 or len(super_parts) < 3:
            continue
        root, point, fstype = _unescape(parts[3]), _unescape(parts[4]), super_parts[0]
        if controller is None:
            if fstype != "cgroup2":
                continue
        elif fstype != "cgroup" or controller not in super_parts[2].split(","):
            continue
        # The mount shows the hierarchy from `root` down: the own path must lie below it.
        if own == root or root == "/":
            relative = own.removeprefix(root) if own != root else ""
        elif own.startswith(root.rstrip("/") + "/"):
            relative = own[len(root.rstrip("/")):]
        else:
            continue
        return Path(point) / relative.lstrip("/")
    return None


def _own(controller: str | None) -> Path:
    found = own_cgroup_dir(controller, Path("/proc/self/cgroup").read_text(),
                           Path("/proc/self/mountinfo").read_text())
    if found is None:
        raise OSError(f"this process's {controller or 'v2'} cgroup is not mounted here")
    return found


# --- making a parent for runs -------------------------------------------------------------

def _enable(directory: Path, controllers: set[str]) -> None:
    missing = controllers - set((directory / "cgroup.subtree_control").read_text().split())
    if missing:
        _write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))


def _make_room(own: Path) -> None:
    """Let the v2 cgroup `own` give memory and pids to children: move its processes into
    a leaf child, then enable the controllers (a cgroup with processes cannot)."""
    if not _v2_controllers(own) >= _V2_CONTROLLERS:
        raise OSError(f"{own} was not given the memory/pids controllers (delegate them, or "
                      f"name a cgroup that has them in sandbox.cgroup_parent)")
    if set((own / "cgroup.subtree_control").read_text().split()) >= _V2_CONTROLLERS:
        return
    leaf = own / HOST_LEAF
    for _ in range(50):  # processes may start meanwhile: move until the enabling sticks
        leaf.mkdir(exist_ok=True)
        moved = 0
        for pid in (own / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                _write(leaf / "cgroup.procs", pid)
                moved += 1
        try:
            _enable(own, _V2_CONTROLLERS)
            if moved:
                log.info("sandbox: moved %d process(es) of %s into %s, so runs nest under it",
                         moved, own, leaf)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
    raise OSError(f"{own} kept getting new processes; name a parent in sandbox.cgroup_parent")


def _v2_parent(configured: str | None) -> Path:
    if configured:
        parent = Path(configured)
        if not _v2_controllers(parent) >= _V2_CONTROLLERS:
            raise OSError(f"{parent} lacks the memory/pids controllers")
    else:
        own = _own(None)
        if own != ROOT:  # the hierarchy's root may hold processes and still delegate
            _make_room(own)
        else:
            _enable(own, _V2_CONTROLLERS)
        parent = own / PARENT_NAME
        parent.mkdir(exist_ok=True)
    _enable(parent, _V2_CONTROLLERS)
    return parent


def _v1_parents(configured: str | None) -> tuple[Path, ...]:
    parents = []
    for controller in _V1_CONTROLLERS:
        if configured:
            parent = ROOT / controller / configured.strip("/")
        else:
            parent = _own(controller) / PARENT_NAME
        parent.mkdir(exist_ok=True)
        parents.append(parent)
    return tuple(parents)


@functools.cache
def probe(configured: str | None = None) -> tuple[Hierarchy | None, str]:
    """(where runs get cgroups, or None; a line saying what was found or why not)."""
    wanted = configured or os.environ.get(PARENT_ENV) or None
    try:
        if (ROOT / "cgroup.controllers").exists():  # unified (v2-only) hierarchy
            found = Hierarchy(2, (_v2_parent(wanted),))
        elif all((ROOT / c / "cgroup.procs").exists() for c in _V1_CONTROLLERS):
            found = Hierarchy(1, _v1_parents(wanted))
        else:
            return None, f"no cgroup v2 controllers and no v1 memory and cpuacct hierarchies under {ROOT}"
        _try_child(found)
        return found, found.describe()
    except OSError as exc:
        version = "v2" if (ROOT / "cgroup.controllers").exists() else "v1"
        return None, f"cgroup {version}: {exc}"


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
        memory = self.dirs[0]
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():  # only with swap accounting on; must not be below the limit
            _write(swap, str(memory_bytes))

    def add(self, pid: int) -> None:
        for directory in self.dirs:
            _write(directory / "cgroup.procs", str(pid))

    def self_join_files(self) -> tuple[Path, ...] | None:
        """v1: the `tasks` files a single-threaded process joins by writing 0 to each;
        None on v2, where the runner adds the pid (`add`)."""
        if self.hierarchy.version == 2:
            return None
        return tuple(directory / "tasks" for directory in self.dirs)

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

    def cpu_seconds(self) -> float | None:
        """CPU the run's processes used so far, all of them together (None: unreadable)."""
        try:
            if self.hierarchy.version == 2:
                for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
                return None
            return int((self.dirs[1] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError, IndexError):
            return None

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
