#!/bin/bash
# Cluster init script: what the sandbox that runs generated code (execute) needs. Databricks
# runs init scripts as root on Ubuntu (22.04 ships bubblewrap 0.6, 24.04 ships 0.9).
# Executors running as root get `bwrap+cgroup` where the container lets them make cgroups,
# else `bwrap` (`sandbox.isolation: auto` takes either; at `bwrap` the program's memory
# and CPU as a whole are polled, see docs/sandbox.md's threat model). It needs:
#  - bubblewrap >= 0.8 (--size, --disable-userns): the distribution's, else the pinned
#    upstream release built into /usr/local/bin;
#  - for executors that are not root: unprivileged user namespaces, which Ubuntu 24.04
#    restricts (kernel.apparmor_restrict_unprivileged_userns=1).
# Without them `auto` refuses to run: no network isolation on nodes that hold cloud
# credentials.
set -euo pipefail
BWRAP_TAG=v0.11.0
BWRAP_COMMIT=9ca3b05ec787acfb4b17bed37db5719fa777834f
export PATH=/usr/local/bin:$PATH DEBIAN_FRONTEND=noninteractive

bwrap_recent() {
  local v
  v=$(bwrap --version 2>/dev/null | awk '{print $2}')
  [ -n "$v" ] && [ "$(printf '%s\n0.8.0\n' "$v" | sort -V | head -n1)" = 0.8.0 ]
}
if ! bwrap_recent; then
  apt-get update -qq
  apt-get install -y -qq bubblewrap
fi
if ! bwrap_recent; then
  apt-get install -y -qq git gcc meson ninja-build libcap-dev pkg-config
  src=$(mktemp -d)
  git clone --quiet --depth 1 --branch "$BWRAP_TAG" https://github.com/containers/bubblewrap "$src"
  if [ "$(git -C "$src" rev-parse HEAD)" != "$BWRAP_COMMIT" ]; then
    echo "bubblewrap $BWRAP_TAG is not commit $BWRAP_COMMIT: not installing it" >&2
    exit 1
  fi
  (cd "$src" && meson setup _build --prefix=/usr/local -Dman=disabled -Dselinux=disabled -Dtests=false \
     && ninja -C _build && ninja -C _build install) >/dev/null
  rm -rf "$src"
fi
# Kernel settings belong to the host: a container may not be allowed to change them (a
# note then; executors running as root need none of them).
for setting in kernel.apparmor_restrict_unprivileged_userns=0 kernel.unprivileged_userns_clone=1; do
  if [ -e "/proc/sys/$(echo "${setting%%=*}" | tr . /)" ]; then
    sysctl -w "$setting" || echo "note: could not set $setting (needed only for executors that are not root)"
  fi
done
if [ "$(cat /proc/sys/user/max_user_namespaces)" = 0 ]; then
  sysctl -w user.max_user_namespaces=15000 || echo "note: could not set user.max_user_namespaces"
fi
bwrap --version
