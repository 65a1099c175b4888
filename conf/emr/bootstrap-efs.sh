#!/bin/bash
# EMR bootstrap action: mount an Amazon EFS file system at /mnt/efs on every node, the
# directory every process can write that `selfalign report` (step.json) and
# `selfalign train` (train-step.json) write to. Argument: the file system id (fs-...),
# in the same VPC with a mount target the nodes' security group can reach on NFS (2049).
set -euo pipefail
FS_ID=${1:?usage: bootstrap-efs.sh fs-XXXXXXXX}
if ! mountpoint -q /mnt/efs; then
  sudo dnf install -y amazon-efs-utils
  sudo mkdir -p /mnt/efs
  sudo mount -t efs -o tls "$FS_ID":/ /mnt/efs
fi
# YARN containers may run as another user than the one bootstrapping: open the two
# directories the steps write (sticky, like /tmp).
sudo mkdir -p /mnt/efs/selfalign/reports /mnt/efs/selfalign/checkpoints
sudo chmod 1777 /mnt/efs/selfalign /mnt/efs/selfalign/reports /mnt/efs/selfalign/checkpoints
