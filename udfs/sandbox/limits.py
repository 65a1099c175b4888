"""What one program may use, and the range each limit may be configured in.

The ranges are the one place that bounds `sandbox.*` (jobs/core/config.py reads them): a
value outside them would make every run fail (an output budget too small for the
completion marker), a kernel refuse the limit on each run (open files past any hard
limit), or overflow inside the run (an infinite wall time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

MiB = 1 << 20
GiB = 1 << 30

# name -> (least, most) allowed, inclusive.
RANGES: dict[str, tuple[float, float]] = {
    "cpu_seconds": (1, 3600),
    "wall_seconds": (0.5, 7200.0),
    "memory_bytes": (32 * MiB, 1024 * GiB),
    "max_processes": (2, 4096),
    "file_size_bytes": (4096, 64 * GiB),
    "disk_bytes": (1 * MiB, 64 * GiB),
    "open_files": (16, 65536),
    "output_bytes": (4096, 1 * GiB),
}


@dataclass(frozen=True)
class Limits:
    """Limits for one program as a whole: all its processes and all its files.

    memory_bytes holds for the whole program through a cgroup where the machine gives one
    (level bwrap+cgroup), and per process (RLIMIT_AS) in any case. max_processes holds for
    the whole program through RLIMIT_NPROC, which counts the tasks of the run's own uid
    (as root) or user namespace, and through pids.max under cgroup v2. disk_bytes is the
    size of each tmpfs the program can write (its dir, /tmp, /dev/shm); under a cgroup
    their pages count as its memory too.
    """

    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_bytes: int = 2 * GiB
    # Tasks (processes and threads) the program may have at once, itself included.
    max_processes: int = 64
    file_size_bytes: int = 64 * MiB
    disk_bytes: int = 256 * MiB
    open_files: int = 256
    output_bytes: int = 1 * MiB  # stdout + stderr; past it the run is killed and fails

    def __post_init__(self) -> None:
        for item in fields(self):
            problem = out_of_range(item.name, getattr(self, item.name))
            if problem:
                raise ValueError(f"Limits.{item.name}: {problem}")

    @classmethod
    def from_settings(cls, settings: object) -> Limits:
        """From any object with some of these attribute names, e.g. jobs.core.config.SandboxConfig
        (the others keep the defaults above: max_processes, file_size_bytes, disk_bytes,
        open_files and output_bytes are no config keys)."""
        return cls(**{item.name: getattr(settings, item.name) for item in fields(cls)
                      if hasattr(settings, item.name)})


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def allowed_range(name: str) -> str:
    least, most = RANGES[name]
    return f"from {_number(least)} to {_number(most)}"


def out_of_range(name: str, value: object) -> str | None:
    """Why `value` is not allowed for limit `name`, or None when it is."""
    least, most = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return f"must be a number {allowed_range(name)}"
    if not least <= value <= most:
        return f"must be {allowed_range(name)} (got {value:g})"
    return None
