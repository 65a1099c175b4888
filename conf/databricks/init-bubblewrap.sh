#!/bin/bash
# Cluster init script: bubblewrap for the sandbox that runs generated code (execute).
# Without it, `sandbox.isolation: auto` refuses to run (no network isolation on nodes
# that hold cloud credentials). Databricks runs init scripts as root on Ubuntu.
set -euo pipefail
if ! command -v bwrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap
fi
bwrap --version
