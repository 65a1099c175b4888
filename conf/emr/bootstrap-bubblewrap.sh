#!/bin/bash
# EMR bootstrap action: bubblewrap for the sandbox that runs generated code (execute).
# Without it, `sandbox.isolation: auto` refuses to run (no network isolation on nodes
# that hold the instance role's credentials). Runs on every node before YARN starts.
set -euo pipefail
if ! command -v bwrap >/dev/null; then
  sudo dnf install -y bubblewrap || sudo yum install -y bubblewrap
fi
bwrap --version
