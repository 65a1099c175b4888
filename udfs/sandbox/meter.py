"""Whole-program CPU and memory of a bwrap run that has no cgroup, by polling.

Where executors are not root and have no delegated cgroup (YARN's LinuxContainerExecutor
on EMR), the kernel bounds memory per process only (RLIMIT_AS) and tasks per run
(RLIMIT_NPROC counts the tasks of the run's own user namespace). This meter adds a bound
for the program as a whole: the runner reads the run's own procfs, which bwrap mounted
for its pid namespace and which lists exactly the run's processes, through
/proc/<namespace init>/root/proc, and kills the run once

    memory = sum over its processes of (RssAnon + RssShmem) + used pages of its tmpfs
             mounts (its dir, /tmp, /dev/shm)

reaches memory_bytes. Pages shared copy-on-write after a fork count once per process
that maps them: conservative, as proportional set sizes (smaps_rollup) cost ~16 ms per
GiB to read, time in which a program keeps allocating. CPU is the sum of utime + stime + cutime
+ cstime of its live processes (a dead process's time is in its reaper's cutime).

What polling cannot do that a cgroup does (docs/sandbox.md, threat model): it acts every
_POLL_S, so a program can overshoot by what it allocates in that time (each process
still stops at RLIMIT_AS); memory no process maps (a memfd or SysV segment nobody maps,
pipe and socket buffers, kernel memory) is not seen; CPU of children reaped
automatically (SIGCHLD ignored) is not seen; the kill is bwrap's pid-namespace teardown,
not an atomic cgroup kill.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import time

from udfs.sandbox.levels import SANDBOX_DIR

_POLL_S = 0.025  # between samples, at least
_COST_FACTOR = 20  # and at least this many times what the last sample cost
_TMPFS = (SANDBOX_DIR, "/tmp", "/dev/shm")
_RSS_FIELDS = (b"RssAnon:", b"RssShmem:")


@functools.cache
def _host_proc_dev() -> int:
    return os.stat("/proc").st_dev


@functools.cache
def _ticks_per_s() -> int:
    return os.sysconf("SC_CLK_TCK")


def _read(dir_fd: int, path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return b""  # gone meanwhile
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _kib(text: bytes, names: tuple[bytes, ...]) -> int | None:
    """The sum of the named `Name: N kB` lines, None when none of them is there."""
    total, found = 0, False
    for line in text.splitlines():
        if line.startswith(names):
            total += int(line.split()[1])
            found = True
    return total * 1024 if found else None


def _cpu_ticks(stat: bytes) -> int:
    # Fields after the command name (which may hold anything, ")" too): state is
    # field 3, so utime, stime, cutime, cstime (14-17) are [11:15].
    fields = stat.rpartition(b")")[2].split()
    return sum(int(value) for value in fields[11:15]) if len(fields) >= 15 else 0


class NamespaceMeter:
    """Polls one bwrap run: `sample()` -> (CPU seconds, memory bytes), None until known."""

    def __init__(self, init_pid: int, init_pidfd: int) -> None:
        self.init_pid, self.init_pidfd = init_pid, init_pidfd
        self.proc_fd: int | None = None
        self.tmpfs_fds: list[int] = []
        self.last: tuple[float | None, int | None] = (None, None)
        self.next_at = 0.0
        self.peak = 0  # the most memory any sample saw

    def _alive(self) -> bool:
        return not select.select([self.init_pidfd], [], [], 0)[0]

    def _open(self) -> bool:
        """Open the run's procfs and tmpfs mounts once bwrap has set them up."""
        if self.proc_fd is not None:
            return True
        root = f"/proc/{self.init_pid}/root"
        try:
            fd = os.open(f"{root}/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        # Before bwrap's pivot_root its init still sees the host's /proc; and the pid is
        # the init's only while the init is alive (its pidfd says so).
        if os.fstat(fd).st_dev == _host_proc_dev() or not self._alive():
            os.close(fd)
            return False
        self.proc_fd = fd
        for path in _TMPFS:
            with contextlib.suppress(OSError):
                self.tmpfs_fds.append(os.open(f"{root}{path}", os.O_RDONLY | os.O_DIRECTORY
                                              | os.O_NOFOLLOW | os.O_CLOEXEC))
        return True

    def _processes(self) -> list[str]:
        assert self.proc_fd is not None
        try:
            return [name for name in os.listdir(self.proc_fd) if name.isdigit()]
        except OSError:
            return []

    def _tmpfs_bytes(self) -> int:
        used = 0
        for fd in self.tmpfs_fds:
            info = os.fstatvfs(fd)
            used += (info.f_blocks - info.f_bfree) * info.f_frsize
        return used

    def sample(self) -> tuple[float | None, int | None]:
        """(CPU seconds, memory bytes) of the run now; the last sample when polled sooner
        than its cost allows."""
        start = time.monotonic()
        if start < self.next_at or not self._open():
            return self.last
        assert self.proc_fd is not None
        names = self._processes()
        ticks, resident = 0, 0
        for name in names:
            ticks += _cpu_ticks(_read(self.proc_fd, f"{name}/stat"))
            resident += _kib(_read(self.proc_fd, f"{name}/status"), _RSS_FIELDS) or 0
        memory = resident + self._tmpfs_bytes()
        end = time.monotonic()
        self.next_at = end + max(_POLL_S, _COST_FACTOR * (end - start)) - _POLL_S
        self.peak = max(self.peak, memory)
        self.last = (ticks / _ticks_per_s(), memory)
        return self.last

    def close(self) -> None:
        for fd in [*self.tmpfs_fds, *([self.proc_fd] if self.proc_fd is not None else [])]:
            os.close(fd)
        self.tmpfs_fds, self.proc_fd = [], None
