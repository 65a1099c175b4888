"""Run generated Python (an implementation plus its own tests) as hostile code.

Plain Python on plain values: `run_program(program, limits) -> Outcome`; the execute
and evaluate stages wrap it. Unit- and security-tested with real processes, no Spark.

Isolation levels, strongest first (`probe_isolation` says which this machine has):

  bwrap    bubblewrap: new pid, net, ipc, uts (and cgroup) namespaces, so no network
           (only a loopback that is down) and no view of host processes; a fresh root
           holding read-only binds of /usr, a few /etc files and this interpreter's
           prefixes (nothing of /root, /home or the project), a size-capped tmpfs on
           /tmp and /dev/shm, and the run's temp dir bound read-write as the cwd
           /sandbox. --die-with-parent + --unshare-pid: killing bwrap kills all.
  netns    `unshare --net --pid --fork --kill-child --mount-proc` (plus --user
           --map-root-user when not root): no network, no view of host processes,
           but the host file system is visible with the program's user's rights.
  process  rlimits and a process group only. Network and file system are the host's.

Every run: a fresh process group (start_new_session) in a fresh temp dir (cwd and
HOME; removed afterwards), stdin /dev/null, an environment of PATH, LANG, HOME,
PYTHONDONTWRITEBYTECODE and PYTHONHASHSEED=0 only, and this interpreter with
`-s -B -P`: that is `-I` minus `-E`, because the environment is ours and -E would
drop PYTHONHASHSEED (a set's order must not change a verdict between runs).

Limits, set by the harness inside the sandbox before the program runs: RLIMIT_CPU
(SIGXCPU, then SIGKILL a second later), RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE (also
the size of /tmp and /dev/shm under bwrap), RLIMIT_NOFILE, RLIMIT_CORE=0. The wall
timeout and the output cap are the parent's: it reads at most `output_bytes` of
stdout+stderr, keeps only a tail of each, and kills the whole group past either.

Fork bombs when running as root: the kernel never applies RLIMIT_NPROC to uid 0
(fork checks `user != INIT_USER`, and that is the host uid, even inside a user
namespace bwrap would map to it). So as root bwrap makes no user namespace and
leaves the harness only CAP_SETUID/CAP_SETGID, and the harness's program process
drops to a random uid in [2^30, 2^31) that no other process has, then sets the
rlimits: RLIMIT_NPROC counts this run's tasks only (tests/security proves it), and
the program can neither raise its limits, write host files, nor signal or ptrace
anything but its own processes. Having changed uid it is non-dumpable, so its
/proc/self files belong to root (/proc/self/environ is unreadable; status is not).
At process level the same uid lets the parent kill every leftover (`kill -9 -1` as
that uid), daemons that left the process group included. Not root: bwrap and netns
put the program in a new user namespace, where RLIMIT_NPROC counts that
namespace's tasks (kernels >= 5.14); at process level it counts all of the user's
processes and a daemon can outlive the run, which is why process level is opt-in.

Completion marker: a pass needs exit code 0 AND a per-run random token (secrets)
printed after the program's last statement. The parent writes the token into a
pipe and closes its end before the program starts; the harness reads that pipe only
after the program's module code returned, then prints "\\n<token>\\n" with os.write bound
before the program ran and leaves with os._exit(0). The token is in no file, no
argument and no environment variable, so reading its own source, /proc/self/cmdline
or /proc/self/environ gives the program nothing to print. sys.exit(0), os._exit(0),
an exception swallowed by a replaced sys.excepthook or an atexit hook, or a failed
assert under a rebound `builtins.AssertionError` (assert raises the real one) all
end before the harness prints, so they fail. What it cannot stop: code written
against this harness that reads the token pipe itself. Nothing in the same process
can tell its own appended code from the program's; such a program could as well
have written vacuous tests, which no sandbox detects either.

Known gaps: the temp dir is on disk and only each file is capped (RLIMIT_FSIZE), so
the total a run writes is bounded by its wall time; as root (no user namespace
for bwrap's --disable-userns) a program may create user namespaces of its own,
which gives it no way out of its limits (tests/security checks RLIMIT_NPROC there).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

LEVELS = ("process", "netns", "bwrap")  # weakest first
REQUESTS = ("auto", *LEVELS)
STATUSES = ("pass", "fail", "timeout", "memory", "crash", "sandbox-error")

SANDBOX_DIR = "/sandbox"  # the run's temp dir as bwrap shows it
PROGRAM_NAME = "program.py"
TAIL_BYTES = 4096  # of stdout and of stderr kept for the Outcome
_CHUNK = 65536
_EXIT_GRACE_S = 0.5  # after the program exits, for output still in the pipes
_DRAIN_S = 2.0  # after a kill, for the pipes to close (they do once all holders died)
_POLL_S = 0.1  # exit polling when pidfd_open is missing
_UID_RANGE = (1 << 30, 1 << 31)
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/os-release",
    "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/mime.types",
)
_MEMORY_SIGNS = (b"MemoryError", b"Cannot allocate memory")
INSTALL_HINT = "apt-get install -y bubblewrap"

# Runs as `python -s -B -P -c _HARNESS token_fd report_fd uid adopt cpu as nproc fsize
# nofile path`. The first process stays behind as a supervisor: it reaps the program's
# process with wait4 and reports its exact wait status and CPU seconds on report_fd
# (bwrap and unshare only pass on an exit code, and bwrap's own wait4 rusage misses
# the program). As pid 1 of a new pid namespace (netns level) it is the init that
# reaps orphans. At process level (adopt=1) it is a child subreaper, so the
# program's orphans become its children, not zombies left to a host init that may
# never reap them; as root it then kills whatever the program's uid left running
# and reaps it all. As root it keeps uid 0, out of reach of the program's own uid.
# The program's process writes b"1" to report_fd once its limits are in place, and
# runs the program as `python program.py` would: as module __main__, so its
# `if __name__ == "__main__":` tests run and its classes pickle.
_HARNESS = """
import builtins, os, resource, sys, types

def kill_uid(uid):
    if os.fork() == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, 9)
        finally:
            os._exit(0)

def supervise(child, report_fd, uid, adopt):
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == child:
            break
    cpu = usage.ru_utime + usage.ru_stime
    os.write(report_fd, f"{status} {cpu:.3f}\\n".encode())
    if adopt and uid >= 0:
        kill_uid(uid)
    try:
        while os.waitpid(-1, 0 if adopt and uid >= 0 else os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)

def run(argv):
    token_fd, report_fd, uid, adopt = (int(v) for v in argv[1:5])
    cpu, memory, processes, file_size, open_files = (int(v) for v in argv[5:10])
    program = argv[10]
    if adopt:
        import ctypes
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    child = os.fork()
    if child:
        supervise(child, report_fd, uid, adopt)
    if uid >= 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    stdlib = os.path.dirname(os.__file__)
    if not os.access(stdlib, os.R_OK | os.X_OK):
        sys.stderr.write(f"sandbox: uid {os.getuid()} cannot read the standard library at {stdlib}\\n")
        os._exit(125)
    if os.path.dirname(program):
        os.chdir(os.path.dirname(program))
    os.environ.pop("PWD", None)
    for which, soft, hard in (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_NPROC, processes, processes),
        (resource.RLIMIT_FSIZE, file_size, file_size),
        (resource.RLIMIT_NOFILE, open_files, open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(which, (soft, hard))
    read, write, leave = os.read, os.write, os._exit
    flushes = (sys.stdout.flush, sys.stderr.flush)
    write(report_fd, b"1")
    os.close(report_fd)
    sys.argv = [program]
    with open(os.path.basename(program), "rb") as handle:
        code = compile(handle.read(), program, "exec")
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = program, builtins
    sys.modules["__main__"] = main
    exec(code, main.__dict__)
    for flush in flushes:
        flush()
    write(1, b"\\n" + read(token_fd, 64) + b"\\n")
    leave(0)

run(sys.argv)
"""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_bytes: int = 2 << 30  # RLIMIT_AS: address space, not resident memory
    # Tasks (processes and threads) the program may have at once, itself included.
    max_processes: int = 64
    file_size_bytes: int = 64 << 20
    open_files: int = 256
    output_bytes: int = 1 << 20  # stdout + stderr; past it the run is killed and fails

    def __post_init__(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) <= 0:
                raise ValueError(f"Limits.{item.name} must be positive")

    @classmethod
    def from_settings(cls, settings: object) -> Limits:
        """From any object with these attribute names, e.g. jobs.config.SandboxConfig."""
        return cls(**{item.name: getattr(settings, item.name) for item in fields(cls)})


@dataclass(frozen=True)
class Outcome:
    status: str  # one of STATUSES
    passed: bool
    exit_code: int | None  # negative: killed by that signal; None: nothing ran
    duration_s: float
    isolation: str  # the level the program ran under, "none" when refused
    stdout_tail: str
    stderr_tail: str
    detail: str = ""  # why, in words, for anything but a pass


def _refused(detail: str) -> Outcome:
    return Outcome("sandbox-error", False, None, 0.0, "none", "", detail, detail)


# --- choosing the level -------------------------------------------------------------

def choose_isolation(requested: str, allow_weaker: bool) -> tuple[str, str | None]:
    """(level to use, refusal message or None) for a `sandbox.isolation` setting.

    "auto" takes the strongest level here. A named level is used as asked when this
    machine offers it or better; weaker than asked is refused unless allow_weaker.
    """
    if requested not in REQUESTS:
        raise ValueError(f"isolation must be one of {', '.join(REQUESTS)}, not {requested!r}")
    available = probe_isolation()
    if requested == "auto" or LEVELS.index(requested) <= LEVELS.index(available):
        return (available if requested == "auto" else requested), None
    if allow_weaker:
        return available, None
    return available, (
        f"sandbox: isolation '{requested}' is required but the strongest level available "
        f"here is '{available}'; install bubblewrap ({INSTALL_HINT}), or accept "
        f"'{available}' with sandbox.allow_weaker: true (or sandbox.isolation: {available})"
    )


# Checks that a level gives what it promises, not only that its tools start.
_PROBE_PROGRAMS = {
    "bwrap": "import json, os, socket\n"
             "assert [n for _, n in socket.if_nameindex()] == ['lo'], 'network visible'\n"
             "assert sum(p.isdigit() for p in os.listdir('/proc')) <= 4, 'host pids visible'\n"
             "assert os.getcwd() == '/sandbox', 'not in its own dir'\n"
             # Only what leads to the interpreter's binds (a venv under /tmp) may show.
             "assert sorted(os.listdir('/tmp')) == TMP_ENTRIES, 'host files visible'\n",
    "netns": "import json, os, socket\n"
             "assert [n for _, n in socket.if_nameindex()] == ['lo'], 'network visible'\n"
             "assert sum(p.isdigit() for p in os.listdir('/proc')) <= 4, 'host pids visible'\n",
    "process": "import json\n",
}


@functools.cache
def available_levels() -> tuple[str, ...]:
    """The levels that run a program on this machine, weakest first (probed once, ~0.5 s)."""
    tools = {"bwrap": "bwrap", "netns": "unshare", "process": None}
    working = []
    for level in LEVELS:
        tool = tools[level]
        if tool is not None and shutil.which(tool) is None:
            continue
        program = _PROBE_PROGRAMS[level].replace("TMP_ENTRIES", repr(_tmp_entries()))
        if _run_at(level, program, Limits(wall_seconds=60.0), None).passed:
            working.append(level)
    return tuple(working)


def probe_isolation() -> str:
    """The strongest level available here: "bwrap" > "netns" > "process".

    "process" also when nothing passed the probe (say, as root with an interpreter
    only root can read, outside bwrap): runs then end as "sandbox-error" saying why.
    """
    working = available_levels()
    return working[-1] if working else "process"


# --- commands -------------------------------------------------------------------------

def sandbox_env(home: str) -> dict[str, str]:
    """Everything the program gets from the environment: no credentials, no SPARK_*/AWS_*."""
    # Our interpreter first, so a `python` subprocess is the same one.
    path = dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
    return {
        "PATH": ":".join(path),
        "LANG": "C.UTF-8",
        "HOME": home,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def python_command(
    token_fd: int, report_fd: int, uid: int, adopt: bool, limits: Limits, program: str,
) -> list[str]:
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [
        sys.executable, "-s", "-B", *safe_path, "-c", _HARNESS,
        str(token_fd), str(report_fd), str(uid), str(int(adopt)),
        str(limits.cpu_seconds), str(limits.memory_bytes), str(limits.max_processes),
        str(limits.file_size_bytes), str(limits.open_files), program,
    ]


@functools.cache
def _interpreter_dirs() -> tuple[str, ...]:
    """This interpreter's prefixes (venv and base), outermost only, outside /usr."""
    prefixes = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                os.path.dirname(os.path.realpath(sys.executable))}
    prefixes |= {os.path.realpath(p) for p in prefixes}
    # Parents before children; skip what /usr or a chosen parent already shows.
    chosen: list[str] = []
    for path in sorted(prefixes, key=len):
        covered = ("/usr", *chosen)
        if os.path.isdir(path) and not any(path == c or path.startswith(c + "/") for c in covered):
            chosen.append(path)
    return tuple(chosen)


def _tmp_entries() -> list[str]:
    """Names the sandbox's empty /tmp shows: the first step of any bind below /tmp."""
    return sorted({Path(path).parts[2] for path in _interpreter_dirs()
                   if Path(path).parts[:2] == ("/", "tmp") and len(Path(path).parts) > 2})


@functools.cache
def _system_binds() -> tuple[str, ...]:
    """Read-only binds of the system and of this interpreter, at the paths Python knows."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_DIRS:  # merged-/usr systems have these as symlinks into /usr
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    # bwrap would make missing parents (/etc, /root, /root/.pyenv) mode 0700, which
    # the program's uid could not cross.
    args += ["--perms", "0755", "--dir", "/etc"]
    for path in _ETC_FILES:
        args += ["--ro-bind-try", path, path]
    made: set[str] = set()
    for path in _interpreter_dirs():
        for parent in reversed(Path(path).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", path, path]
    return tuple(args)


def bwrap_command(workdir: Path, limits: Limits, as_root: bool) -> list[str]:
    bwrap = shutil.which("bwrap") or "bwrap"
    argv = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent", "--new-session"]
    if as_root:
        # No user namespace: its uid would still be host root, which RLIMIT_NPROC
        # ignores. The harness keeps only what it needs to drop to its own uid.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    size = str(limits.file_size_bytes)
    # The tmpfs mounts first: an interpreter or venv under /tmp (CI runners clone
    # there) is then bound on top of the fresh /tmp instead of hidden by it.
    argv += [
        "--size", size, "--perms", "1777", "--tmpfs", "/tmp",
        "--dev", "/dev",
        "--size", size, "--perms", "1777", "--tmpfs", "/dev/shm",
    ]
    argv += list(_system_binds())
    argv += [
        "--proc", "/proc",
        # No --chdir: bwrap has dropped its caps by then and the dir is the program's
        # uid's alone; the harness goes there after switching to that uid.
        "--bind", str(workdir), SANDBOX_DIR,
        # The new root itself (where /bin and /sandbox were made) goes read-only too.
        "--remount-ro", "/", "--",
    ]
    return argv


def netns_command(as_root: bool) -> list[str]:
    user = [] if as_root else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--ipc", "--uts"]


# --- watching one run -------------------------------------------------------------------

@dataclass
class Capture:
    """A bounded view of a run's output: the tail of each stream and the total read."""

    budget: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, stream: bytearray, chunk: bytes) -> bool:
        """Keep the chunk's tail; False once the run has written more than its budget."""
        self.total += len(chunk)
        stream += chunk
        del stream[:-TAIL_BYTES]
        return self.total <= self.budget


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3: poll instead
        return None


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child unreaped: the group id stays its own until Popen.wait.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def watch(
    proc: subprocess.Popen[bytes], limits: Limits, kill: Callable[[], None],
) -> tuple[Capture, str | None]:
    """Read the run's output until it ends; (capture, "timeout" | "output" | None).

    `kill` ends everything the run started. It is called at the wall deadline, past
    the output budget, or when the program exited but something it left holds the
    pipes open (a daemon at process level); the pipes are then drained, discarding,
    until every holder is gone or _DRAIN_S passed.
    """
    assert proc.stdout is not None and proc.stderr is not None
    capture = Capture(limits.output_bytes)
    streams = {proc.stdout.fileno(): capture.stdout, proc.stderr.fileno(): capture.stderr}
    pidfd = _pidfd(proc.pid)
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ)
    reason: str | None = None
    exited = killed = False
    act_at = time.monotonic() + limits.wall_seconds
    try:
        while streams or not exited:
            now = time.monotonic()
            if now >= act_at:
                if killed:
                    break
                reason = reason or (None if exited else "timeout")
                kill()
                killed, act_at = True, now + _DRAIN_S
                continue
            wait = act_at - now if pidfd is not None else min(act_at - now, _POLL_S)
            events = selector.select(wait)
            if pidfd is None and not exited and _has_exited(proc.pid):
                exited, act_at = True, min(act_at, time.monotonic() + _EXIT_GRACE_S)
            for key, _ in events:
                if key.fd == pidfd:
                    selector.unregister(pidfd)
                    exited = True
                    if not killed:
                        act_at = min(act_at, time.monotonic() + _EXIT_GRACE_S)
                    continue
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    selector.unregister(key.fd)
                    del streams[key.fd]
                elif not killed and not capture.add(streams[key.fd], chunk):
                    reason = "output"
                    kill()
                    killed, act_at = True, time.monotonic() + _DRAIN_S
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
    return capture, reason


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


# --- verdicts -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    """What the harness said on its report pipe."""

    started: bool  # the program's limits were in place and it was about to run
    exit_code: int | None = None  # Popen style, negative for a signal; None: no report
    cpu_s: float | None = None  # of the program's process and its reaped children


def parse_report(data: bytes) -> Report:
    started = data.startswith(b"1")
    words = data[1:].split() if started else data.split()
    try:
        status, cpu = int(words[0]), float(words[1])
        return Report(started, os.waitstatus_to_exitcode(status), cpu)
    except (IndexError, ValueError):
        return Report(started)  # the supervisor was killed (timeout, or by the program)


def exit_code_from(returncode: int, report: Report) -> int:
    """The program's exit code, negative for a signal, as exactly as known."""
    if report.exit_code is not None:
        return report.exit_code
    if returncode > 128:  # a wrapper or the supervisor passing on a signal death
        return 128 - returncode
    return returncode


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def judge(
    *, limits: Limits, report: Report, reason: str | None, returncode: int,
    marker_seen: bool, stderr_tail: bytes,
) -> tuple[str, str]:
    """(status, detail) for one finished run.

    `returncode` is what the outermost process exited with: only it and the marker
    decide a pass, as a program that reached the report pipe could write anything there.
    """
    if reason == "timeout":
        return "timeout", f"wall time over {limits.wall_seconds:g} s"
    if not report.started:
        # The harness never got to the program: bwrap, unshare or Python failed.
        return "sandbox-error", f"the sandbox did not start (exit code {returncode})"
    if reason == "output":
        return "fail", f"output over {limits.output_bytes} bytes"
    if returncode == 0 and marker_seen:
        return "pass", ""
    if any(sign in stderr_tail for sign in _MEMORY_SIGNS):
        return "memory", f"out of memory (limit {limits.memory_bytes} bytes)"
    code = exit_code_from(returncode, report)
    cpu_limited = report.cpu_s is not None and report.cpu_s >= limits.cpu_seconds
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu_limited):
        return "timeout", f"CPU time over {limits.cpu_seconds} s"
    if code < 0:
        return "crash", f"killed by {_signal_name(-code)}"
    if code != 0:
        return "fail", f"exit code {code}"
    return "fail", "exit code 0 without the completion marker: the program ended before its last test"


# --- one run --------------------------------------------------------------------------------

def _fresh_uid() -> int:
    return _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0])


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError:
        # The program may have left directories without write or search permission.
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, name), 0o700)
        shutil.rmtree(path, ignore_errors=True)


def _decode_tail(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _run_at(level: str, program: str, limits: Limits, work_root: str | Path | None) -> Outcome:
    workdir = Path(tempfile.mkdtemp(prefix="selfalign-sandbox-", dir=work_root))
    try:
        return _run_in(workdir, level, program, limits)
    finally:
        _remove_tree(workdir)


def _read_report(fd: int) -> Report:
    # Non-blocking: a holder of the write end may still be dying after a kill.
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 256)
    except BlockingIOError:
        data = b""
    return parse_report(data)


def _run_in(workdir: Path, level: str, program: str, limits: Limits) -> Outcome:
    as_root = os.geteuid() == 0
    uid = _fresh_uid() if as_root else -1
    (workdir / PROGRAM_NAME).write_text(program, encoding="utf-8", errors="replace")
    if as_root:
        os.chown(workdir, uid, uid)
    inside = SANDBOX_DIR if level == "bwrap" else str(workdir)
    token = secrets.token_hex(16).encode()
    token_r, token_w = os.pipe()
    report_r, report_w = os.pipe()
    os.write(token_w, token)  # fits the pipe buffer; read by the harness only at the end
    os.close(token_w)
    if level == "bwrap":
        prefix = bwrap_command(workdir, limits, as_root)
    else:
        prefix = netns_command(as_root) if level == "netns" else []
    # bwrap: the harness changes to /sandbox once it has the uid that owns it. Else
    # Popen's child, still root, does; the path there may cross dirs only root can.
    path = f"{SANDBOX_DIR}/{PROGRAM_NAME}" if level == "bwrap" else PROGRAM_NAME
    adopt = level == "process"  # a pid namespace's init reaps at the other levels
    argv = prefix + python_command(token_r, report_w, uid, adopt, limits, path)

    def kill() -> None:
        if adopt and uid >= 0:
            # Leaves the supervisor alive to reap them all, then it exits by itself.
            kill_uid(uid)
        else:
            kill_group(proc.pid)

    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=sandbox_env(inside), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(token_r, report_w),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(report_r)
        detail = f"sandbox: could not start {argv[0]}: {exc}"
        return Outcome("sandbox-error", False, None, 0.0, level, "", detail, detail)
    finally:
        os.close(token_r)
        os.close(report_w)
    try:
        capture, reason = watch(proc, limits, kill)
        kill()  # whatever the program left behind, whichever way it ended
        kill_group(proc.pid)  # and the supervisor, had it not left by now
        returncode = proc.wait()
        report = _read_report(report_r)
    finally:
        os.close(report_r)
        if proc.returncode is None:  # interrupted: leave nothing running
            kill()
            kill_group(proc.pid)
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    duration = time.monotonic() - start

    marker = b"\n" + token + b"\n"
    stdout = bytes(capture.stdout)
    marker_seen = marker in stdout
    stderr = bytes(capture.stderr)
    status, detail = judge(limits=limits, report=report, reason=reason, returncode=returncode,
                           marker_seen=marker_seen, stderr_tail=stderr)
    return Outcome(
        status=status, passed=status == "pass", exit_code=exit_code_from(returncode, report),
        duration_s=duration, isolation=level, stdout_tail=_decode_tail(stdout.replace(marker, b"")),
        stderr_tail=_decode_tail(stderr), detail=detail,
    )


def run_program(
    program: str,
    limits: Limits | None = None,
    isolation: str = "auto",
    allow_weaker: bool = False,
    work_root: str | Path | None = None,
) -> Outcome:
    """Run `program` (its code, then its tests) once in the sandbox and judge it.

    `isolation` and `allow_weaker` are the `sandbox.*` config keys (see
    choose_isolation); a refusal is an Outcome with status "sandbox-error", never an
    exception. `work_root` is where the run's temp dir is made (default: TMPDIR).
    Thread-safe: runs may go in parallel from a pool.
    """
    limits = limits or Limits()
    level, refusal = choose_isolation(isolation, allow_weaker)
    if refusal is not None:
        return _refused(refusal)
    return _run_at(level, program, limits, work_root)
