"""Run generated Python (an implementation plus its own tests) as hostile code.

Plain Python on plain values: `run_program(program, limits) -> Outcome`; the execute and
evaluate stages wrap it. Unit- and security-tested with real processes, no Spark.

Modules: `levels` (what each isolation level promises and how it starts a program), `probe`
(which levels this machine has, which one a config gets), `meter` (whole-program memory and
CPU of a bwrap run without a cgroup, polled),
`harness` (the program that runs first inside the sandbox), `run` (one run, start to
cleanup), `cgroup` (whole-program limits), `cleanup` (link-safe removal), `verdict`
(status rules), `limits` (the limits and their allowed ranges).

Threat model (what docs/sandbox.md, "Threat model", states for users):
- Contained at bwrap and bwrap+cgroup (`auto` takes the stronger one here and refuses
  anything weaker): network (none, not even loopback), host files (a fresh read-only
  root; the program's dir, /tmp and /dev/shm are tmpfs mounts that vanish with the
  run), host processes (a pid namespace; as root a uid of its own that can signal or
  ptrace nothing else), credentials (a scrubbed environment, no stdin, no inherited
  descriptors but its pipes, a fresh session keyring), CPU and wall time, output size,
  tasks (RLIMIT_NPROC of its own uid or user namespace). Every process of the run is
  gone before `run_program` returns.
- Memory and CPU for the program as a whole: at bwrap+cgroup the kernel enforces them
  (tmpfs pages count as memory, an OOM kill is atomic). At bwrap (no cgroup: executors
  that are not root, e.g. YARN containers) the runner polls the run's processes and
  tmpfs mounts every 25 ms and kills it past the limit (meter.py): it can be overshot
  by what the program allocates between two polls (each process still stops at
  RLIMIT_AS), and memory no process maps (memfds and SysV segments nobody maps, pipe
  and socket buffers, kernel memory) is not counted.
- Not contained: kernel exploits (the sandbox shares the host kernel; use VMs such as
  gVisor or Firecracker for that threat), CPU cache side channels, and a program that
  reads the completion token from its own memory (see harness.py): it can fake a pass,
  as vacuous tests can.
- Weaker levels, used only when asked (`sandbox.allow_weaker` or a named level): netns
  shows the host file system with the program's uid's rights; process level also has
  the host network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from udfs.sandbox.harness import PROGRAM_NAME
from udfs.sandbox.levels import (
    FULL,
    INSTALL_HINT,
    LEVELS,
    REQUESTS,
    SANDBOX_DIR,
    bwrap_command,
    netns_command,
    python_command,
    sandbox_env,
)
from udfs.sandbox.limits import RANGES, Limits, out_of_range
from udfs.sandbox.probe import available_levels, choose_isolation, probe_isolation
from udfs.sandbox.run import Files, run_at
from udfs.sandbox.verdict import (
    STATUSES,
    TAIL_BYTES,
    Capture,
    Outcome,
    Report,
    exit_code_from,
    judge,
    not_run,
    parse_report,
)


def run_program(
    program: str,
    limits: Limits | None = None,
    isolation: str = "auto",
    allow_weaker: bool = False,
    work_root: str | Path | None = None,
    *,
    give: Mapping[str, Path] | None = None,
    keep: Sequence[str] = (),
    into: Path | None = None,
    cgroup_parent: str | None = None,
    tests_from_line: int = 1,
) -> Outcome:
    """Run `program` (its code, then its tests) once in the sandbox and judge it.

    `isolation`, `allow_weaker` and `cgroup_parent` are the `sandbox.*` config keys (see
    choose_isolation); a refusal is an Outcome with status "sandbox-error", never an
    exception. `give` puts files in the program's dir; after a pass, the files named in
    `keep` (plain names) that the program left there as plain files are copied into
    `into` (Outcome.kept names them); a name that is not plain is a ValueError.
    `tests_from_line`: the line where the program's tests start; a failed assert from there
    on fails the run even if the program caught it (the implementation above may assert
    what its tests expect to fail).
    `work_root`: where a host dir is made when one is needed (default: TMPDIR).
    Thread-safe: runs may go in parallel from a pool.
    """
    limits = limits or Limits()
    try:
        source = program.encode("utf-8")
    except UnicodeEncodeError as exc:
        return not_run("fail", f"the program is not valid UTF-8 text ({exc.reason} at "
                               f"character {exc.start}): Python cannot run it")
    files = Files(dict(give or {}), tuple(keep), into)
    level, refusal = choose_isolation(isolation, allow_weaker, cgroup_parent)
    if refusal is not None:
        return not_run("sandbox-error", refusal)
    return run_at(level, source, limits, cgroup_parent=cgroup_parent, work_root=work_root,
                  files=files, tests_from_line=tests_from_line)


__all__ = [
    "FULL", "INSTALL_HINT", "LEVELS", "PROGRAM_NAME", "RANGES", "REQUESTS", "SANDBOX_DIR",
    "STATUSES", "TAIL_BYTES", "Capture", "Limits", "Outcome", "Report", "available_levels",
    "bwrap_command", "choose_isolation", "exit_code_from", "judge", "netns_command",
    "not_run", "out_of_range", "parse_report", "probe_isolation", "python_command",
    "run_program", "sandbox_env",
]
