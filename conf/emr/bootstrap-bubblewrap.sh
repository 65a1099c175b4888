#!/bin/bash
# EMR bootstrap action: what the sandbox that runs generated code (execute) needs, on every
# node before YARN starts. YARN runs executors as a non-root user with no cgroup of their
# own, so the sandbox runs at `bwrap` there (`sandbox.isolation: auto` takes it; the
# program's memory and CPU as a whole are polled, see docs/sandbox.md's threat model). It needs:
#  - bubblewrap >= 0.8 (--size, --disable-userns): the distribution's, else the pinned
#    upstream release built into /usr/local/bin;
#  - unprivileged user namespaces (bwrap --unshare-user as the YARN user):
#    user.max_user_namespaces > 0.
# Without them `auto` refuses to run: no network isolation on nodes holding the instance
# role's credentials.
set -euo pipefail
BWRAP_TAG=v0.11.0
BWRAP_COMMIT=9ca3b05ec787acfb4b17bed37db5719fa777834f
export PATH=/usr/local/bin:$PATH

bwrap_recent() {
  local v
  v=$(bwrap --version 2>/dev/null | awk '{print $2}')
  [ -n "$v" ] && [ "$(printf '%s\n0.8.0\n' "$v" | sort -V | head -n1)" = 0.8.0 ]
}
command -v bwrap >/dev/null || sudo dnf install -y bubblewrap || true
if ! bwrap_recent; then
  sudo dnf install -y git gcc meson ninja-build libcap-devel pkgconf-pkg-config
  src=$(mktemp -d)
  git clone --quiet --depth 1 --branch "$BWRAP_TAG" https://github.com/containers/bubblewrap "$src"
  if [ "$(git -C "$src" rev-parse HEAD)" != "$BWRAP_COMMIT" ]; then
    echo "bubblewrap $BWRAP_TAG is not commit $BWRAP_COMMIT: not installing it" >&2
    exit 1
  fi
  (cd "$src" && meson setup _build --prefix=/usr/local -Dman=disabled -Dselinux=disabled -Dtests=false \
     && ninja -C _build && sudo ninja -C _build install) >/dev/null
  rm -rf "$src"
fi
if [ "$(cat /proc/sys/user/max_user_namespaces)" = 0 ]; then
  echo "user.max_user_namespaces = 15000" | sudo tee /etc/sysctl.d/90-selfalign-sandbox.conf >/dev/null
  sudo sysctl -w user.max_user_namespaces=15000
fi
bwrap --version
# The check: an unprivileged user gets the namespaces the sandbox uses.
sudo -u nobody env PATH="$PATH" bwrap --unshare-user --disable-userns --unshare-pid --unshare-net \
  --ro-bind / / --proc /proc --dev /dev --size 1048576 --tmpfs /tmp --chdir / true
