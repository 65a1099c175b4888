"""The GPUs a generation task may use: the ones Spark assigned to it.

With GPU scheduling, Spark gives each task addresses from the executor's GPUs
(`TaskContext.resources()["gpu"].addresses`) and only promises that tasks running at
the same time get different ones; it does not hide the others. CUDA, and with it torch
and vLLM, sees every GPU of the machine unless CUDA_VISIBLE_DEVICES narrows it, so two
tasks would both load their model onto the first card. `pin_task_gpus` therefore makes
the task's addresses the only visible devices, before an engine loads.

An address is a CUDA ordinal of what the executor sees. When the executor itself was
started with CUDA_VISIBLE_DEVICES (a container runtime or resource manager that narrowed
it), address i is entry i of that list, not physical GPU i: the reading of pyspark's own
TorchDistributor (`pyspark.ml.torch.distributor._get_gpus_owned`) and of CUDA's
cudaSetDevice, so a discovery script that numbers the executor's GPUs from 0 works
either way. Python workers are reused across tasks, so "the executor's value" is the
one this process had before it first pinned anything.

Without GPU resources (local mode, CPU executors, Spark Connect) nothing changes.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"


def visible_devices(addresses: Sequence[str], inherited: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for a task given `addresses`, in a process that started with
    `inherited` (None: unset, every GPU visible)."""
    if not addresses:
        raise ValueError("no GPU addresses to make visible")
    if inherited is None:
        return ",".join(addresses)
    listed = [entry.strip() for entry in inherited.split(",") if entry.strip()]
    chosen = []
    for address in addresses:
        if not address.isdigit() or int(address) >= len(listed):
            raise ValueError(
                f"Spark assigned GPU address {address!r}, but the executor only sees "
                f"CUDA_VISIBLE_DEVICES={inherited!r}: with CUDA_VISIBLE_DEVICES set, the GPU "
                "discovery script must number the visible GPUs from 0"
            )
        chosen.append(listed[int(address)])
    return ",".join(chosen)


def task_gpu_addresses() -> list[str]:
    """The GPU addresses Spark assigned to the running task; [] outside a task or without."""
    from pyspark import TaskContext  # here, so udfs import without Spark

    context = TaskContext.get()
    if context is None:
        return []
    gpu = context.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None else []


@functools.cache
def executor_visible_devices() -> str | None:
    """CUDA_VISIBLE_DEVICES as this process had it before any task pinned its own."""
    return os.environ.get(CUDA_VISIBLE_DEVICES)


def pin_task_gpus() -> str | None:
    """Make the task's GPUs the only ones CUDA sees; the value set, or None (environment
    untouched) when the task has no GPU resources."""
    addresses = task_gpu_addresses()
    if not addresses:
        return None
    value = visible_devices(addresses, executor_visible_devices())
    os.environ[CUDA_VISIBLE_DEVICES] = value
    # Executors configure no Python logging: stderr is what lands in the executor's log.
    print(f"selfalign: task GPUs {','.join(addresses)}: {CUDA_VISIBLE_DEVICES}={value} (pid {os.getpid()})",
          file=sys.stderr, flush=True)
    return value
