"""A real Spark standalone cluster for tests: a master and workers as separate JVMs of the
installed pyspark, on 127.0.0.1 with free ports, each with its own work dir.

    with standalone_cluster(tmp / "cluster", workers=2, cores=1) as cluster:
        subprocess.run([SPARK_HOME / "bin" / "spark-submit", "--master", cluster.master_url, ...],
                       env=spark_env())

Every JVM runs in a process group of its own, so stopping the cluster also ends what a
worker started (executors), and then any process still working inside the cluster's
directory (their Python workers): nothing outlives the `with`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
# A master and two workers start in ~10 s on an idle machine; CI shares two cores.
START_TIMEOUT_S = 120.0


@dataclass
class StandaloneCluster:
    master_url: str  # spark://127.0.0.1:<port>
    webui_url: str  # the master's UI: /json/ lists workers and applications
    root: Path  # logs/ and one work dir per worker
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=5) as response:
            return json.load(response)

    def logs(self, limit: int = 4000) -> str:
        """The tail of every JVM's log and every executor's stderr, for failure messages."""
        files = sorted((self.root / "logs").glob("*.log")) + sorted(self.root.glob("work-*/*/*/stderr"))
        return "\n".join(f"--- {path}\n{path.read_text(errors='replace')[-limit:]}" for path in files)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: every socket stays bound until all are picked, so the
    kernel cannot hand the same port out twice (a master's UI and its RPC port once did)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def spark_env() -> dict[str, str]:
    """The environment the cluster's JVMs and spark-submit run with: loopback only."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SPARK_", "PYSPARK_"))}
    env.pop("PYTHONPATH", None)
    return {**env, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_HOSTNAME": "localhost"}


def _properties(path: Path, conf: Mapping[str, str]) -> Path:
    path.write_text("".join(f"{key} {value}\n" for key, value in conf.items()))
    return path


def _start(name: str, args: list[str], root: Path, stack: ExitStack) -> subprocess.Popen[bytes]:
    log = (root / "logs" / f"{name}.log").open("wb")
    stack.callback(log.close)
    process = subprocess.Popen(
        [str(SPARK_HOME / "bin" / "spark-class"), *args], cwd=root, env=spark_env(),
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    stack.callback(stop_group, process)
    return process


def kill_processes_under(root: Path) -> list[int]:
    """SIGKILL every process whose working directory is inside `root`: pyspark's Python
    daemon puts itself in a process group of its own, so an executor's Python workers
    (working in <root>/work-<i>/...) are not in their worker's group."""
    killed = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:  # gone, or not ours to look at
            continue
        if cwd.is_relative_to(root) and int(proc.name) != os.getpid():
            with suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


def stop_group(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it: a JVM that exits on SIGTERM may leave
    children behind (an executor, Python workers), and they share its group."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace_s)


@contextmanager
def standalone_cluster(root: Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                       worker_conf: Mapping[str, str] | None = None) -> Iterator[StandaloneCluster]:
    """A master and `workers` workers of `cores` cores each, ALIVE before this yields."""
    (root / "logs").mkdir(parents=True, exist_ok=True)
    port, webui = free_ports(2)
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui}", root)
    with ExitStack() as stack:
        # Runs last: whatever the workers' groups did not take along.
        stack.callback(kill_processes_under, root.resolve())
        cluster.processes.append(_start("master", [
            "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
            "--webui-port", str(webui)], root, stack))
        # Workers only once the master holds both its ports: a port the kernel hands a
        # worker (its UI, its RPC) could otherwise be the master's, not yet bound.
        _wait_for(cluster, lambda state: state.get("url") == cluster.master_url, "the master")
        conf = _properties(root / "worker.conf", worker_conf or {})
        for index in range(workers):
            work = root / f"work-{index}"
            work.mkdir(exist_ok=True)
            cluster.processes.append(_start(f"worker-{index}", [
                "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                # 0: the worker's UI takes a port the kernel picks when it binds.
                "--webui-port", "0", "--cores", str(cores), "--memory", memory,
                "--work-dir", str(work), "--properties-file", str(conf), cluster.master_url,
            ], root, stack))
        _wait_for_workers(cluster, workers)
        yield cluster


def _wait_for(cluster: StandaloneCluster, ready: Callable[[dict], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        dead = [p.args for p in cluster.processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a cluster JVM exited: {dead}\n{cluster.logs()}")
        try:
            if ready(cluster.state()):
                return
        except (OSError, ValueError):  # the master's UI is not up (or not the master's) yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {START_TIMEOUT_S:.0f} s\n{cluster.logs()}")


def _wait_for_workers(cluster: StandaloneCluster, expected: int) -> None:
    def alive(state: dict) -> bool:
        return sum(w.get("state") == "ALIVE" for w in state.get("workers", [])) >= expected

    _wait_for(cluster, alive, f"{expected} workers ALIVE")
