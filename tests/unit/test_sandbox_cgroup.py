"""Where a run's cgroup goes: under the runner's own, as /proc/self/cgroup names it and
/proc/self/mountinfo shows it (host, Docker without a cgroup namespace, Kubernetes with
one, systemd's unified hierarchy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from udfs.sandbox.cgroup import own_cgroup_dir

V1_HOST_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
YARN_CGROUPS = """\
4:memory:/hadoop-yarn/container_1700000000000_0001_01_000002
3:cpu,cpuacct:/hadoop-yarn/container_1700000000000_0001_01_000002
0::/
"""
# Docker on cgroup v1 without a cgroup namespace: the container's own cgroup is mounted
# as the hierarchy's root, and /proc/self/cgroup still shows the host's path.
DOCKER_MOUNTS = """\
700 690 0:61 /docker/4f2c /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
701 690 0:62 /docker/4f2c /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
"""
DOCKER_CGROUPS = "9:memory:/docker/4f2c\n3:cpu,cpuacct:/docker/4f2c\n"
V2_MOUNTS = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
SPACED_MOUNTS = "29 23 0:26 / /mnt/cgroup\\040v2 rw - cgroup2 cgroup2 rw\n"


@pytest.mark.parametrize(
    ("controller", "cgroups", "mounts", "expected"),
    [
        ("memory", YARN_CGROUPS, V1_HOST_MOUNTS,
         "/sys/fs/cgroup/memory/hadoop-yarn/container_1700000000000_0001_01_000002"),
        ("cpuacct", YARN_CGROUPS, V1_HOST_MOUNTS,
         "/sys/fs/cgroup/cpu,cpuacct/hadoop-yarn/container_1700000000000_0001_01_000002"),
        (None, YARN_CGROUPS, V1_HOST_MOUNTS, "/sys/fs/cgroup/unified"),
        ("memory", DOCKER_CGROUPS, DOCKER_MOUNTS, "/sys/fs/cgroup/memory"),
        ("memory", "9:memory:/docker/4f2c/inner\n", DOCKER_MOUNTS, "/sys/fs/cgroup/memory/inner"),
        (None, "0::/kubepods.slice/pod-1/cri-abc\n", V2_MOUNTS,
         "/sys/fs/cgroup/kubepods.slice/pod-1/cri-abc"),
        (None, "0::/\n", V2_MOUNTS, "/sys/fs/cgroup"),  # a cgroup namespace's root
        (None, "0::/user.slice/app\n", SPACED_MOUNTS, "/mnt/cgroup v2/user.slice/app"),
    ],
)
def test_the_own_cgroup_is_found_where_it_is_mounted(
    controller: str | None, cgroups: str, mounts: str, expected: str,
) -> None:
    assert own_cgroup_dir(controller, cgroups, mounts) == Path(expected)


@pytest.mark.parametrize(
    ("controller", "cgroups", "mounts"),
    [
        ("pids", YARN_CGROUPS, V1_HOST_MOUNTS),  # not mounted here
        ("memory", "9:memory:/elsewhere\n", DOCKER_MOUNTS),  # outside what the mount shows
        (None, "4:memory:/x\n", V2_MOUNTS),  # no v2 line
    ],
)
def test_an_own_cgroup_this_process_cannot_see_is_none(
    controller: str | None, cgroups: str, mounts: str,
) -> None:
    assert own_cgroup_dir(controller, cgroups, mounts) is None
