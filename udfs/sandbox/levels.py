"""Isolation levels: what each promises, how each starts a program, which this machine has.

Levels, weakest first:
  process       rlimits, a process group and (as root) a uid of its own. Host network and
                file system: opt-in only (sandbox.allow_weaker).
  netns         `unshare --net --pid --ipc --uts`: no network, no view of host processes;
                the host file system is visible with the program's uid's rights.
  bwrap         bubblewrap: new pid, net, ipc, uts and cgroup namespaces; a fresh root of
                read-only binds (/usr, a few /etc files, this interpreter); the program's
                dir, /tmp and /dev/shm are tmpfs mounts of `disk_bytes` that vanish with it.
                Memory is limited per process (RLIMIT_AS) and, for the whole program,
                by the runner polling its processes and tmpfs mounts (meter.py); tasks
                by RLIMIT_NPROC in its user namespace. The least `auto` accepts: what
                works where executors are not root and have no cgroup (YARN on EMR).
  bwrap+cgroup  bwrap, and the run in a cgroup of its own: memory (tmpfs pages included)
                and tasks limited for the whole program by the kernel, killed atomically,
                and known to be gone before the run returns. What `auto` takes where the
                machine has it.

Which of them this machine has, and which a config gets: udfs/sandbox/probe.py.
"""

from __future__ import annotations

import functools
import marshal
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from udfs.sandbox.limits import Limits

LEVELS = ("process", "netns", "bwrap", "bwrap+cgroup")  # weakest first
REQUESTS = ("auto", *LEVELS)
FULL = LEVELS[-1]
SANDBOX_DIR = "/sandbox"  # the program's dir as bwrap shows it
SANDBOX_USER = "sandbox"  # the program's user name
INSTALL_HINT = "apt-get install -y bubblewrap"

_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/nsswitch.conf", "/etc/hosts", "/etc/os-release",
    "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/mime.types",
)


# Where bubblewrap is looked for besides PATH: a newer build (the EMR and Databricks
# scripts in conf/ build one where the distribution's is too old) goes to /usr/local/bin.
_BWRAP_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")


def bwrap_path() -> str | None:
    """The bubblewrap binary: the first on PATH, else in the usual system dirs."""
    return shutil.which("bwrap") or shutil.which("bwrap", path=os.pathsep.join(_BWRAP_DIRS))


@functools.cache
def harness_source() -> str:
    return resources.files("udfs.sandbox").joinpath("harness.py").read_text(encoding="utf-8")


HARNESS_FILENAME = "<sandbox harness>"  # as tracebacks through the harness name it
# What `python -c` runs: the harness, compiled once per runner process and handed in as
# marshalled code on the descriptor in argv[1] (compiling its text costs every run ~4 ms
# of CPU; the interpreter that loads it is the one that marshalled it).
BOOTSTRAP = (
    "import marshal, os, sys\n"
    "fd = int(sys.argv.pop(1))\n"
    "code = marshal.loads(os.pread(fd, os.fstat(fd).st_size, 0))\n"
    "os.close(fd)\n"
    "del fd\n"
    "exec(code)\n"
)


@functools.cache
def harness_code() -> bytes:
    return marshal.dumps(compile(harness_source(), HARNESS_FILENAME, "exec"))


# --- commands --------------------------------------------------------------------------

def sandbox_env(home: str) -> dict[str, str]:
    """Everything the program gets from the environment: no credentials, no SPARK_*/AWS_*."""
    # Our interpreter first, so a `python` subprocess is the same one.
    path = dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
    return {
        "PATH": ":".join(path),
        "LANG": "C.UTF-8",
        "HOME": home,
        # A uid of the run's own has no passwd entry below bwrap: getpass.getuser() and
        # friends read these first.
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


@dataclass(frozen=True)
class Channels:
    """The descriptors the harness gets (-1: none), as the sandbox's processes see them."""

    harness: int
    token: int
    report: int
    program: int
    marker: int
    handback: int = -1


def python_command(
    channels: Channels, uid: int, adopt: bool, limits: Limits, workdir: str,
    tests_from_line: int = 1, keep: tuple[str, ...] = (),
) -> list[str]:
    # `-s -B -P` is `-I` minus `-E`: the environment is ours, and -E would drop
    # PYTHONHASHSEED (a set's order must not change a verdict between runs).
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [
        sys.executable, "-s", "-B", *safe_path, "-c", BOOTSTRAP, str(channels.harness),
        str(channels.token), str(channels.report), str(channels.program), str(channels.marker),
        str(channels.handback), str(uid), str(int(adopt)),
        str(limits.cpu_seconds), str(limits.memory_bytes), str(limits.max_processes),
        str(limits.file_size_bytes), str(limits.open_files), workdir, str(tests_from_line),
        "/".join(keep), str(limits.disk_bytes),
    ]


def passwd_entries(uid: int) -> tuple[bytes, bytes]:
    """/etc/passwd and /etc/group as the sandbox shows them: root and the program's user,
    nothing of the host's accounts."""
    passwd = f"root:x:0:0:root:/root:/usr/sbin/nologin\n{SANDBOX_USER}:x:{uid}:{uid}::{SANDBOX_DIR}:/bin/sh\n"
    group = f"root:x:0:\n{SANDBOX_USER}:x:{uid}:\n"
    if uid == 0:
        passwd, group = passwd.splitlines()[0] + "\n", group.splitlines()[0] + "\n"
    return passwd.encode(), group.encode()


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


def tmp_entries() -> list[str]:
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


def bwrap_command(limits: Limits, as_root: bool, info_fd: int, data: dict[str, int]) -> list[str]:
    """bwrap's argv up to `--`. The program's dir is a tmpfs of `disk_bytes`; `data` maps a
    path inside (a given file, /etc/passwd) to a descriptor bwrap copies it from, so no
    file of the caller is bound, let alone changed."""
    bwrap = bwrap_path() or "bwrap"
    argv = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent",
            "--new-session", "--info-fd", str(info_fd)]
    if as_root:
        # No user namespace: its uid would still be host root, which RLIMIT_NPROC
        # ignores. The harness keeps only what it needs to drop to its own uid.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    size = str(limits.disk_bytes)
    # The tmpfs mounts first: an interpreter or venv under /tmp (CI runners clone
    # there) is then bound on top of the fresh /tmp instead of hidden by it.
    argv += [
        "--size", size, "--perms", "1777", "--tmpfs", "/tmp",
        "--dev", "/dev",
        "--size", size, "--perms", "1777", "--tmpfs", "/dev/shm",
    ]
    argv += list(_system_binds())
    argv += ["--proc", "/proc"]
    # Sticky and world-writable: the harness (no CAP_CHOWN) cannot give it to the
    # program's uid, and nothing but that uid runs in here.
    argv += ["--size", size, "--perms", "1777", "--tmpfs", SANDBOX_DIR]
    for path, fd in data.items():
        argv += ["--perms", "0444", "--ro-bind-data", str(fd), path]
    # The new root itself (where /bin and /sandbox were made) goes read-only too.
    return [*argv, "--remount-ro", "/", "--"]


def netns_command(as_root: bool) -> list[str]:
    user = [] if as_root else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--ipc", "--uts"]
