#!/bin/bash
# EMR bootstrap action: the cgroup mount YARN's GPU isolation needs on Amazon Linux 2023.
# AL2023 boots with the unified cgroup v2 hierarchy; YARN's GPU plugin isolates devices
# through a cgroup v1 `devices` controller, so (as AWS documents for EMR 7.x and later,
# https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-spark-rapids.html) mount one at
# the root cluster-configurations.json names (container-executor cgroups root and yarn-site
# ...cgroups.mount-path: /spark-rapids-cgroup). Runs on every node before YARN starts.
set -euo pipefail
CGROUP_ROOT=/spark-rapids-cgroup
if ! mountpoint -q "$CGROUP_ROOT/devices"; then
  sudo mkdir -p "$CGROUP_ROOT/devices"
  sudo mount -t cgroup -o devices cgroupv1-devices "$CGROUP_ROOT/devices"
fi
sudo chmod a+rwx -R "$CGROUP_ROOT"
