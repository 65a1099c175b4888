"""One run of a generated program: start it at a level, watch it, end everything it
started, make sure all of it is gone, then judge it.

Order at the end of every run, however it ended: kill (the cgroup, the process group,
the run's uid at process level), wait until every process of the run is gone (the
cgroup empty, or bwrap's pid-namespace init reaped, which the kernel allows only once
the namespace is empty), and only then hand back files and remove the host dir (levels
below bwrap, and evaluation's reference runs), with the link-safe remover.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from udfs.sandbox import cgroup
from udfs.sandbox.cleanup import remove_tree
from udfs.sandbox.handback import check_names, parse_records, read_kept, write_into
from udfs.sandbox.harness import PROGRAM_NAME
from udfs.sandbox.levels import (
    FULL,
    SANDBOX_DIR,
    Channels,
    bwrap_command,
    harness_code,
    netns_command,
    passwd_entries,
    python_command,
    sandbox_env,
)
from udfs.sandbox.limits import Limits
from udfs.sandbox.meter import NamespaceMeter
from udfs.sandbox.verdict import Outcome, exit_code_from, judge, not_run, parse_report
from udfs.sandbox.watch import watch

_GONE_S = 10.0  # after the kill, for the kernel to finish every process of the run
_UID_RANGE = (1 << 30, 1 << 31)
# The shell in front of the sandbox when a cgroup is used, so nothing the run starts can
# begin outside it. v2: it waits until the runner has put its pid in the cgroup. v1: it
# moves itself, writing 0 to each hierarchy's `tasks` file: a single thread moving
# itself skips the kernel's global threadgroup lock and its RCU grace period (about 5 ms
# a hierarchy here, for each run).
_WAIT_FOR_CGROUP = 'read -r _ && exec "$@" </dev/null'
_JOIN_CGROUP = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo 0 >"$1" || exit 125; shift; n=$((n - 1)); done; exec "$@"'


# --- ending everything ---------------------------------------------------------------------

def kill_group(pid: int) -> None:
    # Safe before the leader is reaped: its pid, and so the group id, is not reused.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid`, from a process of that uid: kill(-1) spares only itself.

    Atomic, unlike scanning /proc and killing pids that may have been reused.
    """
    kill = shutil.which("kill", path="/usr/bin:/bin")
    if kill is not None:
        subprocess.run(
            [kill, "-9", "-1"], user=uid, group=uid, extra_groups=[], env={},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=30, check=False,
        )
        return
    pid = os.fork()  # no kill(1) binary: the child only switches uid, signals and leaves
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _uid_has_processes(uid: int) -> bool:
    wanted = str(uid)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Uid:"):
                        if line.split()[1].decode() == wanted:
                            return True
                        break
        except OSError:
            continue
    return False


def _wait_uid_gone(uid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _uid_has_processes(uid):
        if time.monotonic() >= deadline:
            return False
        kill_uid(uid)
        time.sleep(0.002)
    return True


def _wait_readable(fd: int, timeout_s: float) -> bool:
    return bool(select.select([fd], [], [], timeout_s)[0])


def _read_namespace_init(info_fd: int) -> tuple[int, int] | None:
    """bwrap's pid-namespace init, from its --info-fd JSON: (pid, pidfd), None if it failed."""
    data = b""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and _wait_readable(info_fd, deadline - time.monotonic()):
        chunk = os.read(info_fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        pid = int(json.loads(data)["child-pid"])
        return pid, os.pidfd_open(pid)
    except (ValueError, KeyError, TypeError, OSError):
        return None


# --- one run ------------------------------------------------------------------------------

def _fresh_uid() -> int:
    return _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0])


@dataclass(frozen=True)
class Files:
    """Files for a run: `give` goes in (read-only copies); after a pass, the files named in
    `keep` (plain names) come back out of the program's dir into `into`."""

    give: Mapping[str, Path]
    keep: Sequence[str] = ()
    into: Path | None = None

    def __post_init__(self) -> None:
        check_names(self.give)
        check_names(self.keep)

    @property
    def hands_back(self) -> bool:
        return self.into is not None and bool(self.keep)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_available(fd: int, limit: int) -> bytes:
    # Non-blocking: a holder of the write end may still be dying after a kill.
    os.set_blocking(fd, False)
    try:
        return os.read(fd, limit)
    except BlockingIOError:
        return b""


class _Run:
    """The resources of one run, released in order by `close`."""

    def __init__(self, level: str, limits: Limits, files: Files, work_root: str | Path | None,
                 hierarchy: cgroup.Hierarchy | None) -> None:
        self.level, self.limits, self.files = level, limits, files
        self.bwrap = level.startswith("bwrap")
        self.as_root = os.geteuid() == 0
        self.uid = _fresh_uid() if self.as_root else -1
        self.fds: list[int] = []
        self.group: cgroup.RunCgroup | None = None
        self.host_dir: Path | None = None
        self.namespace_init: int | None = None
        self.meter: NamespaceMeter | None = None  # bwrap without a cgroup: polled limits
        self.handback: int | None = None  # the memfd the harness copies kept files into
        self.proc: subprocess.Popen[bytes] | None = None
        if hierarchy is not None:
            self.group = cgroup.RunCgroup.create(hierarchy, limits.memory_bytes,
                                                 limits.max_processes)
        if not self.bwrap:  # at bwrap the program's dir is a tmpfs of disk_bytes
            self.host_dir = Path(tempfile.mkdtemp(prefix="selfalign-sandbox-", dir=work_root))
            for name, source in files.give.items():
                shutil.copyfile(source, self.host_dir / name)
            if self.as_root:
                os.chown(self.host_dir, self.uid, self.uid)
        elif files.hands_back:
            self.handback = self.keep_fd(os.memfd_create("handback"))

    def keep_fd(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self.fds += [read, write]
        return read, write

    def close_fd(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.remove(fd)
            os.close(fd)

    def kill(self) -> None:
        if self.group is not None:
            self.group.kill()
        if not self.bwrap and self.uid >= 0:
            kill_uid(self.uid)  # daemons that left the process group, at process level
        if self.proc is not None:
            kill_group(self.proc.pid)

    def wait_gone(self) -> bool:
        """True once no process of the run is left (as far as this level can tell)."""
        if self.group is not None:
            return self.group.wait_empty(_GONE_S)
        if self.namespace_init is not None:
            return _wait_readable(self.namespace_init, _GONE_S)
        if self.uid >= 0:
            return _wait_uid_gone(self.uid, _GONE_S)
        return True  # process level as a user: nothing can tell (documented)

    def collect(self) -> tuple[str, ...]:
        """Hand the kept files back into `into`; only once every process of the run is gone."""
        into, budget = self.files.into, self.limits.disk_bytes
        if into is None or not self.files.keep:
            return ()
        if self.handback is not None:
            os.lseek(self.handback, 0, os.SEEK_SET)
            data = os.read(self.handback, budget + 4096 * len(self.files.keep))
            return write_into(into, parse_records(data, self.files.keep))
        if self.host_dir is not None:
            return write_into(into, read_kept(self.host_dir, self.files.keep, budget))
        return ()

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:  # interrupted
            self.kill()
            self.proc.wait()
        gone = self.wait_gone()
        for fd in list(self.fds):
            self.close_fd(fd)
        if self.meter is not None:
            self.meter.close()
        if self.namespace_init is not None:
            os.close(self.namespace_init)
        if self.group is not None:
            self.group.remove()
        # A run whose processes outlived the kill keeps its dir: removing it would race
        # with them (the outcome is a sandbox-error saying so).
        if self.host_dir is not None and gone:
            remove_tree(self.host_dir)


@dataclass(frozen=True)
class _Started:
    """The runner's ends of a started run's channels."""

    report: int
    marker: int
    info: int | None


def _bwrap_data(run: _Run) -> dict[str, int]:
    """What bwrap copies into the sandbox from descriptors: given files and the accounts."""
    data = {f"{SANDBOX_DIR}/{name}": run.keep_fd(os.open(source, os.O_RDONLY | os.O_CLOEXEC))
            for name, source in run.files.give.items()}
    passwd, group = passwd_entries(run.uid if run.as_root else os.getuid())
    data["/etc/passwd"] = run.keep_fd(_memfd("passwd", passwd))
    data["/etc/group"] = run.keep_fd(_memfd("group", group))
    return data


def _start(run: _Run, source: bytes, token: bytes, tests_from_line: int) -> _Started:
    """Start the run's processes."""
    token_r, token_w = run.pipe()
    os.write(token_w, token)  # fits the pipe buffer; read by the harness before the program
    run.close_fd(token_w)
    report_r, report_w = run.pipe()
    marker_r, marker_w = run.pipe()
    program_fd = run.keep_fd(_memfd("program", source))
    harness_fd = run.keep_fd(_memfd("harness", harness_code()))
    handback = run.handback if run.handback is not None else -1
    channels = Channels(harness_fd, token_r, report_w, program_fd, marker_w, handback)
    passed = [harness_fd, token_r, report_w, program_fd, marker_w]
    passed += [handback] if handback >= 0 else []
    info_r = None
    if run.bwrap:
        info_r, info_w = run.pipe()
        data = _bwrap_data(run)
        passed += [info_w, *data.values()]
        prefix = bwrap_command(run.limits, run.as_root, info_w, data)
        workdir, home = SANDBOX_DIR, SANDBOX_DIR
    else:
        prefix = netns_command(run.as_root) if run.level == "netns" else []
        workdir, home = ".", str(run.host_dir)
    adopt = run.level == "process"  # a pid namespace's init reaps at the other levels
    keep = tuple(run.files.keep) if handback >= 0 else ()
    argv = prefix + python_command(channels, run.uid, adopt, run.limits, workdir,
                                   tests_from_line, keep)
    joins = run.group.self_join_files() if run.group is not None else None
    handshake = run.group is not None and joins is None
    if handshake:
        argv = ["/bin/sh", "-c", _WAIT_FOR_CGROUP, "sh", *argv]
    elif joins is not None:
        argv = ["/bin/sh", "-c", _JOIN_CGROUP, "sh", str(len(joins)), *map(str, joins), *argv]
    run.proc = subprocess.Popen(
        argv, cwd=run.host_dir or "/", env=sandbox_env(home),
        stdin=subprocess.PIPE if handshake else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=passed,
        start_new_session=True,
    )
    for fd in passed:
        if fd != run.handback:
            run.close_fd(fd)
    if run.group is not None and handshake:
        assert run.proc.stdin is not None
        try:
            run.group.add(run.proc.pid)
            run.proc.stdin.write(b"go\n")
        finally:
            run.proc.stdin.close()  # without the line, the shell exits before anything ran
    return _Started(report_r, marker_r, info_r)


def run_at(
    level: str, source: bytes, limits: Limits, *, cgroup_parent: str | None = None,
    work_root: str | Path | None = None, files: Files | None = None, tests_from_line: int = 1,
) -> Outcome:
    """Run `source` at `level` (already chosen) and judge it. Never raises for anything
    the program does; a failure of the machinery is a "sandbox-error" outcome.
    `tests_from_line`: where the program's tests start (asserts above are the
    implementation's own)."""
    files = files or Files({})
    hierarchy = cgroup.probe(cgroup_parent)[0] if level == FULL else None
    if level == FULL and hierarchy is None:
        return not_run("sandbox-error", "sandbox: the cgroup for this run is not available")
    recorded = level
    start = time.monotonic()
    try:
        run = _Run(level, limits, files, work_root, hierarchy)
    except OSError as exc:
        return not_run("sandbox-error", f"sandbox: could not prepare the run: {exc}")
    try:
        token = secrets.token_hex(16).encode()
        try:
            started = _start(run, source, token, tests_from_line)
        except OSError as exc:
            return not_run("sandbox-error", f"sandbox: could not start the run: {exc}", recorded)
        if started.info is not None:
            found = _read_namespace_init(started.info)
            if found is not None:
                run.namespace_init = found[1]
                if run.group is None:  # whole-program memory and CPU, polled
                    run.meter = NamespaceMeter(found[0], found[1])
        assert run.proc is not None
        group, meter = run.group, run.meter
        usage = ((lambda: (group.cpu_seconds(), None)) if group is not None else
                 meter.sample if meter is not None else None)
        capture, reason = watch(run.proc, limits, run.kill, usage)
        run.kill()  # whatever the program left behind, whichever way it ended
        returncode = run.proc.wait()
        report = parse_report(_read_available(started.report, 256))
        gone = run.wait_gone()
        oom_kills = group.oom_kills() if group is not None else 0
        cpu_s = group.cpu_seconds() if group is not None else report.cpu_s
        if meter is not None and meter.last[0] is not None:
            cpu_s = max(cpu_s or 0.0, meter.last[0])
        stdout, stderr = bytes(capture.stdout), bytes(capture.stderr)
        status, detail = judge(limits=limits, report=report, reason=reason,
                               returncode=returncode,
                               marker_seen=token in _read_available(started.marker, 4096),
                               stderr_tail=stderr, oom_kills=oom_kills,
                               memory_seen=meter.peak if meter is not None else None)
        if not gone:
            status, detail = "sandbox-error", "sandbox: processes of the run outlived the kill"
        kept = run.collect() if status == "pass" else ()
        return Outcome(
            status=status, passed=status == "pass", exit_code=exit_code_from(returncode, report),
            duration_s=time.monotonic() - start, isolation=recorded,
            stdout_tail=stdout.decode("utf-8", "replace"),
            stderr_tail=stderr.decode("utf-8", "replace"), detail=detail, kept=kept,
            cpu_s=None if cpu_s is None else round(cpu_s, 3),
        )
    finally:
        run.close()


__all__ = ["PROGRAM_NAME", "Files", "kill_group", "kill_uid", "run_at", "watch"]
