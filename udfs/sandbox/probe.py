"""Which isolation levels work on this machine, and which one a `sandbox.isolation` setting
gets: `auto` takes the strongest level here and refuses anything below bwrap unless
`allow_weaker`; a named level runs as asked where this machine has it (or better).

Why `auto` accepts bwrap without a cgroup: what hostile code wants from an executor (its
cloud credentials: network, host files, other processes, the session keyring) is denied
at bwrap exactly as at bwrap+cgroup; what the cgroup adds is a kernel-enforced bound on
the program's memory and CPU as a whole, which at bwrap the runner polls instead
(udfs/sandbox/meter.py) and the executor's own container limit still backs. Executors
that are not root and have no delegated cgroup (YARN on EMR) have nothing stronger, and
refusing there would push users to `allow_weaker`, which also admits netns and process.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

from udfs.sandbox import cgroup
from udfs.sandbox.levels import FULL, INSTALL_HINT, LEVELS, REQUESTS, bwrap_path, tmp_entries
from udfs.sandbox.limits import Limits
from udfs.sandbox.run import run_at

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
_TOOLS = {"process": None, "netns": "unshare", "bwrap": "bwrap"}
AUTO_LEAST = "bwrap"  # the weakest level `auto` runs generated code at without allow_weaker
# bwrap options the sandbox uses: --size (0.7), and --disable-userns (0.8) without root.
BWRAP_LEAST = {True: (0, 7), False: (0, 8)}  # as root -> version
# Where nothing safe is available: what gives it on each platform (one line).
PLATFORM_HINT = (
    "EMR: bootstrap action conf/emr/bootstrap-bubblewrap.sh (bubblewrap >= 0.8 and "
    "`sysctl -w user.max_user_namespaces=15000`); Databricks: init script "
    "conf/databricks/init-bubblewrap.sh (bubblewrap >= 0.8 and `sysctl -w "
    "kernel.apparmor_restrict_unprivileged_userns=0`)"
)


@functools.cache
def available_levels(cgroup_parent: str | None = None) -> tuple[str, ...]:
    """The levels that run a program on this machine, weakest first (probed once, ~0.5 s)."""
    working = []
    for level in LEVELS[:-1]:
        tool = _TOOLS[level]
        if tool is not None and (bwrap_path() if tool == "bwrap" else shutil.which(tool)) is None:
            continue
        program = _PROBE_PROGRAMS[level].replace("TMP_ENTRIES", repr(tmp_entries()))
        if run_at(level, program.encode(), Limits(wall_seconds=60.0), cgroup_parent=None).passed:
            working.append(level)
    if "bwrap" in working and cgroup.probe(cgroup_parent)[0] is not None:
        working.append(FULL)
    return tuple(working)


def probe_isolation(cgroup_parent: str | None = None) -> str:
    """The strongest level available here ("process" also when nothing passed the probe:
    runs then end as "sandbox-error" saying why)."""
    working = available_levels(cgroup_parent)
    return working[-1] if working else "process"


@functools.cache
def bwrap_version() -> tuple[int, ...] | None:
    """bubblewrap's version (`bwrap --version`), None when it does not say."""
    path = bwrap_path()
    if path is None:
        return None
    try:
        said = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                              check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", said)
    return tuple(int(part) for part in found.groups("0")) if found else None


def _read_sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}") as handle:
            return handle.read().strip()
    except OSError:
        return None


def userns_blocked() -> str | None:
    """Which kernel setting keeps this (non-root) process from user namespaces, if any."""
    for name, off in (("user.max_user_namespaces", "0"),
                      ("kernel.unprivileged_userns_clone", "0"),
                      ("kernel.apparmor_restrict_unprivileged_userns", "1")):
        if _read_sysctl(name) == off:
            return f"{name} = {off}"
    return None


def _bwrap_problem() -> str:
    """Why bubblewrap does not run a program here, as exactly as this machine tells."""
    as_root = os.geteuid() == 0
    version, least = bwrap_version(), BWRAP_LEAST[as_root]
    if version is not None and version[:2] < least:
        return (f"bubblewrap {'.'.join(map(str, version))} is older than "
                f"{'.'.join(map(str, least))}, which the sandbox needs")
    blocked = None if as_root else userns_blocked()
    if blocked is not None:
        return f"unprivileged user namespaces are off ({blocked})"
    return "bubblewrap cannot create its namespaces here"


def _missing(level: str, cgroup_parent: str | None) -> str:
    """Why this machine lacks what `level` needs beyond what it has."""
    reasons = []
    if bwrap_path() is None:
        reasons.append(f"bubblewrap is not installed ({INSTALL_HINT}; {PLATFORM_HINT})")
    elif "bwrap" not in available_levels(cgroup_parent):
        reasons.append(f"{_bwrap_problem()} ({PLATFORM_HINT})")
    if level == FULL:
        found, why = cgroup.probe(cgroup_parent)
        if found is None:
            reasons.append(f"no cgroup for whole-program limits ({why}; run as root, or "
                           "name a delegated cgroup in sandbox.cgroup_parent)")
    return "; ".join(reasons) or "its probe failed"


def choose_isolation(
    requested: str, allow_weaker: bool, cgroup_parent: str | None = None,
) -> tuple[str, str | None]:
    """(level to use, refusal message or None) for a `sandbox.isolation` setting."""
    if requested not in REQUESTS:
        raise ValueError(f"isolation must be one of {', '.join(REQUESTS)}, not {requested!r}")
    available = probe_isolation(cgroup_parent)
    wanted = AUTO_LEAST if requested == "auto" else requested
    if LEVELS.index(wanted) <= LEVELS.index(available):
        return (available if requested == "auto" else requested), None
    if allow_weaker:
        return available, None
    return available, (
        f"sandbox: isolation '{wanted}' is required"
        f"{' for generated code' if requested == 'auto' else ''} but the strongest level "
        f"here is '{available}': {_missing(wanted, cgroup_parent)}. Or accept "
        f"'{available}' with sandbox.allow_weaker: true"
    )
