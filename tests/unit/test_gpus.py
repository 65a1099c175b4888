"""GPU placement of generation tasks, without Spark: which devices a task makes visible
(udfs/llm/gpus.py), the engine cache following them, and the ResourceProfile a cluster
gets (jobs/stages/generation.py). On a cluster: tests/e2e/test_cluster_gpus.py."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from jobs.core.failures import StageError
from jobs.stages.generation import GpuRequest, gpu_profile, gpu_request
from udfs.llm import EngineSettings, Generation, SamplingParams, clear_engine_cache, get_engine
from udfs.llm.gpus import CUDA_VISIBLE_DEVICES, pin_task_gpus, visible_devices

# --- which devices a task sees ---------------------------------------------------------


@pytest.mark.parametrize(("addresses", "inherited", "expected"), [
    (["1"], None, "1"),  # nothing narrowed the executor: the address is the device
    (["0", "1"], None, "0,1"),  # tensor parallel: all of the task's GPUs
    (["GPU-5d2e"], None, "GPU-5d2e"),  # a discovery script may name GPUs by UUID
    (["1"], "2,3", "3"),  # a narrowed executor: address i is its i-th visible GPU
    (["0", "1"], "6, 7", "6,7"),
    (["0"], "GPU-aaa,GPU-bbb", "GPU-aaa"),
])
def test_visible_devices(addresses: list[str], inherited: str | None, expected: str):
    assert visible_devices(addresses, inherited) == expected


@pytest.mark.parametrize(("addresses", "inherited"), [
    (["2"], "4,5"),  # beyond what the executor sees
    (["GPU-5d2e"], "4,5"),  # not an ordinal
    (["0"], ""),  # the executor sees no GPU at all
    ([], None),
])
def test_visible_devices_refuses_what_cannot_be_a_visible_gpu(addresses: list[str], inherited: str | None):
    with pytest.raises(ValueError, match="GPU"):
        visible_devices(addresses, inherited)


def test_outside_a_spark_task_nothing_is_pinned(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CUDA_VISIBLE_DEVICES, "3")
    assert pin_task_gpus() is None
    assert os.environ[CUDA_VISIBLE_DEVICES] == "3"


# --- the engine cache follows the devices ----------------------------------------------


closed_engines: list[DeviceBoundEngine] = []


class DeviceBoundEngine:
    """Holds a model on the devices visible when built, one per process, like vLLM."""

    ONE_PER_PROCESS = True
    CACHE_FIELDS = ("model",)

    def __init__(self, cfg: EngineSettings) -> None:
        self.devices = os.environ.get(CUDA_VISIBLE_DEVICES)

    def check(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"engine": "device-bound"}

    def generate(self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
                 ) -> list[Generation]:
        return []

    def close(self) -> None:
        closed_engines.append(self)


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    clear_engine_cache()
    closed_engines.clear()
    yield
    clear_engine_cache()


def test_an_engine_bound_to_gpus_is_rebuilt_on_the_task_gpus(fresh_cache, monkeypatch: pytest.MonkeyPatch):
    settings = EngineSettings(engine=f"python:{__name__}:DeviceBoundEngine")
    monkeypatch.setenv(CUDA_VISIBLE_DEVICES, "0")
    first = get_engine(settings)
    assert get_engine(settings) is first  # same devices: loaded once per worker
    # The next task of this reused worker was given GPU 1: the model moves there and the
    # copy on GPU 0 is closed, never two models in one process.
    monkeypatch.setenv(CUDA_VISIBLE_DEVICES, "1")
    second = get_engine(settings)
    assert isinstance(second, DeviceBoundEngine)
    assert second is not first and second.devices == "1"
    assert closed_engines == [first]


def test_an_engine_without_gpus_ignores_the_devices(fresh_cache, monkeypatch: pytest.MonkeyPatch):
    settings = EngineSettings(engine="python:tests.fake_engine:FakeEngine")
    monkeypatch.setenv(CUDA_VISIBLE_DEVICES, "0")
    first = get_engine(settings)
    monkeypatch.setenv(CUDA_VISIBLE_DEVICES, "1")
    assert get_engine(settings) is first


# --- what a generation stage asks of the cluster ----------------------------------------


def conf_of(**settings: str):
    values = {f"spark.{key.replace('__', '.')}": value for key, value in settings.items()}
    return values.get


def test_static_executors_get_a_task_profile_of_tensor_parallel_size_gpus():
    request = gpu_request(2, conf_of(executor__resource__gpu__amount="4"))
    assert request == GpuRequest(gpus=2, executor_requests=False)
    profile = gpu_profile(request)
    assert profile.taskResources["gpu"].amount == 2
    assert profile.taskResources["cpus"].amount == 1
    assert profile.executorResources == {}  # Spark refuses executor requests without dynamic allocation


def test_dynamic_allocation_also_sizes_the_executors():
    conf = conf_of(dynamicAllocation__enabled="true",
                   executor__resource__gpu__discoveryScript="/opt/gpus.sh",
                   executor__resource__gpu__vendor="nvidia.com")
    profile = gpu_profile(gpu_request(4, conf))
    assert profile.taskResources["gpu"].amount == 4
    gpu = profile.executorResources["gpu"]
    assert (gpu.amount, gpu.discoveryScript, gpu.vendor) == (4, "/opt/gpus.sh", "nvidia.com")


@pytest.mark.parametrize("executor_gpus", [None, "1"])
def test_tasks_that_could_never_be_scheduled_are_refused(executor_gpus: str | None):
    settings = {} if executor_gpus is None else {"executor__resource__gpu__amount": executor_gpus}
    with pytest.raises(StageError, match=r"llm.tensor_parallel_size=2 .*spark.executor.resource.gpu.amount"):
        gpu_request(2, conf_of(dynamicAllocation__enabled="false", **settings))
