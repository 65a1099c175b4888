"""Which isolation levels work on this machine, and which one a `sandbox.isolation` setting
gets: `auto` takes the strongest level here and refuses anything below bwrap+cgroup
unless `allow_weaker`; a named level runs as asked where this machine has it (or better).
"""

from __future__ import annotations

import functools
import shutil

from udfs.sandbox import cgroup
from udfs.sandbox.levels import FULL, INSTALL_HINT, LEVELS, REQUESTS, tmp_entries
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


@functools.cache
def available_levels(cgroup_parent: str | None = None) -> tuple[str, ...]:
    """The levels that run a program on this machine, weakest first (probed once, ~0.5 s)."""
    working = []
    for level in LEVELS[:-1]:
        tool = _TOOLS[level]
        if tool is not None and shutil.which(tool) is None:
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


def _missing(level: str, cgroup_parent: str | None) -> str:
    """Why this machine lacks what `level` needs beyond what it has."""
    reasons = []
    if shutil.which("bwrap") is None:
        reasons.append(f"bubblewrap is not installed ({INSTALL_HINT})")
    elif "bwrap" not in available_levels(cgroup_parent):
        reasons.append("bubblewrap cannot create its namespaces here")
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
    wanted = FULL if requested == "auto" else requested
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
