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
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from udfs.sandbox import cgroup
from udfs.sandbox.cleanup import remove_tree
from udfs.sandbox.harness import PROGRAM_NAME
from udfs.sandbox.levels import (
    FULL,
    SANDBOX_DIR,
    bwrap_command,
    netns_command,
    python_command,
    sandbox_env,
)
from udfs.sandbox.limits import Limits
from udfs.sandbox.verdict import Outcome, exit_code_from, judge, not_run, parse_report
from udfs.sandbox.watch import watch

_GONE_S = 10.0  # after the kill, for the kernel to finish every process of the run
_UID_RANGE = (1 << 30, 1 << 31)
# The shell in front of the sandbox when a cgroup is used: it waits until its pid is in
# the cgroup, so nothing the run starts can begin outside it.
_WAIT_FOR_CGROUP = 'read -r _ && exec "$@" </dev/null'


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


def _read_namespace_init(info_fd: int) -> int | None:
    """A pidfd of bwrap's pid-namespace init, from its --info-fd JSON (None if it failed)."""
    data = b""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and _wait_readable(info_fd, deadline - time.monotonic()):
        chunk = os.read(info_fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return os.pidfd_open(int(json.loads(data)["child-pid"]))
    except (ValueError, KeyError, TypeError, OSError):
        return None


# --- one run ------------------------------------------------------------------------------

def _fresh_uid() -> int:
    return _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0])


def _take_file(source: Path, target: Path) -> bool:
    """Move a file the program left in its dir, never through a link it may have planted."""
    try:
        info = os.lstat(source)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    os.replace(source, target)
    return True


def _readable_by_anyone(path: Path) -> Path:
    mode = os.stat(path).st_mode
    if mode & 0o444 != 0o444:
        os.chmod(path, mode | 0o444)
    return path


@dataclass(frozen=True)
class Files:
    """Files for a run: `give` goes in (read-only under bwrap); after a pass, the files
    named in `keep` come back out of the program's dir into `into`."""

    give: Mapping[str, Path]
    keep: Sequence[str] = ()
    into: Path | None = None

    @property
    def hands_back(self) -> bool:
        return self.into is not None and bool(self.keep)


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
        self.proc: subprocess.Popen[bytes] | None = None
        if hierarchy is not None:
            self.group = cgroup.RunCgroup.create(hierarchy, limits.memory_bytes,
                                                 limits.max_processes)
        if not self.bwrap or files.hands_back:
            self.host_dir = Path(tempfile.mkdtemp(prefix="selfalign-sandbox-", dir=work_root))
            for name, source in files.give.items():
                shutil.copyfile(source, self.host_dir / name)
            if self.as_root:
                os.chown(self.host_dir, self.uid, self.uid)

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
        if self.host_dir is None or self.files.into is None:
            return ()
        into = self.files.into
        return tuple(name for name in self.files.keep
                     if _take_file(self.host_dir / name, into / name))

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:  # interrupted
            self.kill()
            self.proc.wait()
        gone = self.wait_gone()
        for fd in list(self.fds):
            self.close_fd(fd)
        if self.namespace_init is not None:
            os.close(self.namespace_init)
        if self.group is not None:
            self.group.remove()
        # A run whose processes outlived the kill keeps its dir: removing it would race
        # with them (the outcome is a sandbox-error saying so).
        if self.host_dir is not None and gone:
            remove_tree(self.host_dir)


def _start(run: _Run, source: bytes, token: bytes) -> tuple[int, int | None]:
    """Start the run's processes; (report read end, info read end or None)."""
    token_r, token_w = run.pipe()
    os.write(token_w, token)  # fits the pipe buffer; read by the harness before the program
    run.close_fd(token_w)
    report_r, report_w = run.pipe()
    program_fd = os.memfd_create("program")
    run.fds.append(program_fd)
    os.write(program_fd, source)
    os.lseek(program_fd, 0, os.SEEK_SET)
    passed = [token_r, report_w, program_fd]
    info_r = None
    if run.bwrap:
        info_r, info_w = run.pipe()
        passed.append(info_w)
        prefix = bwrap_command(run.limits, run.as_root, info_w, run.host_dir,
                               {n: _readable_by_anyone(p) for n, p in run.files.give.items()})
        workdir, home = SANDBOX_DIR, SANDBOX_DIR
    else:
        prefix = netns_command(run.as_root) if run.level == "netns" else []
        workdir, home = ".", str(run.host_dir)
    adopt = run.level == "process"  # a pid namespace's init reaps at the other levels
    argv = prefix + python_command(token_r, report_w, program_fd, run.uid, adopt, run.limits,
                                   workdir)
    if run.group is not None:
        argv = ["/bin/sh", "-c", _WAIT_FOR_CGROUP, "sh", *argv]
    run.proc = subprocess.Popen(
        argv, cwd=run.host_dir or "/", env=sandbox_env(home),
        stdin=subprocess.PIPE if run.group is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=passed,
        start_new_session=True,
    )
    for fd in passed:
        run.close_fd(fd)
    if run.group is not None:
        assert run.proc.stdin is not None
        try:
            run.group.add(run.proc.pid)
            run.proc.stdin.write(b"go\n")
        finally:
            run.proc.stdin.close()  # without the line, the shell exits before anything ran
    return report_r, info_r


def _read_report(fd: int) -> bytes:
    # Non-blocking: a holder of the write end may still be dying after a kill.
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 256)
    except BlockingIOError:
        return b""


def run_at(
    level: str, source: bytes, limits: Limits, *, cgroup_parent: str | None = None,
    work_root: str | Path | None = None, files: Files | None = None,
) -> Outcome:
    """Run `source` at `level` (already chosen) and judge it. Never raises for anything
    the program does; a failure of the machinery is a "sandbox-error" outcome."""
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
            report_r, info_r = _start(run, source, token)
        except OSError as exc:
            return not_run("sandbox-error", f"sandbox: could not start the run: {exc}", recorded)
        if info_r is not None:
            run.namespace_init = _read_namespace_init(info_r)
        assert run.proc is not None
        capture, reason = watch(run.proc, limits, run.kill)
        run.kill()  # whatever the program left behind, whichever way it ended
        returncode = run.proc.wait()
        report = parse_report(_read_report(report_r))
        gone = run.wait_gone()
        oom_kills = run.group.oom_kills() if run.group is not None else 0
        marker = b"\n" + token + b"\n"
        stdout, stderr = bytes(capture.stdout), bytes(capture.stderr)
        status, detail = judge(limits=limits, report=report, reason=reason,
                               returncode=returncode, marker_seen=marker in stdout,
                               stderr_tail=stderr, oom_kills=oom_kills)
        if not gone:
            status, detail = "sandbox-error", "sandbox: processes of the run outlived the kill"
        kept = run.collect() if status == "pass" else ()
        return Outcome(
            status=status, passed=status == "pass", exit_code=exit_code_from(returncode, report),
            duration_s=time.monotonic() - start, isolation=recorded,
            stdout_tail=stdout.replace(marker, b"").decode("utf-8", "replace"),
            stderr_tail=stderr.decode("utf-8", "replace"), detail=detail, kept=kept,
        )
    finally:
        run.close()


__all__ = ["PROGRAM_NAME", "Files", "kill_group", "kill_uid", "run_at", "watch"]
