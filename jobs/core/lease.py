"""One writer per lake: a lease in <lake.root>/_lease that a run takes before it writes.

A lease is a numbered file, `_lease/<generation>.json`, holding who has it (run id, host,
process, since when) and when it was last renewed. Taking it:

  1. list `_lease/` and read the newest generation n;
  2. if n is held (not released, renewed within `run.lease_seconds`) by another run, stop
     with one line naming the holder;
  3. else create generation n+1 with an atomic create-if-absent: of two runs that both
     saw n, exactly one creates n+1, and the other stops naming the winner.

Nothing is ever overwritten except by its holder, and nothing is deleted that another
run could still be deciding on, so the one atomic operation the store must offer is
create-if-absent: link(2) on a local disk (O_EXCL without hard links); on object stores the driver's Hadoop
FileSystem with overwrite off (S3A with conditional create, Hadoop 3.4.2+: a PUT with
If-None-Match: *; ABFS If-None-Match; the GCS connector ifGenerationMatch=0). A thread
renews the lease every lease_seconds / 4; a run killed without releasing it blocks the
next one for at most lease_seconds, and not at all from the same host (its process is
gone) or for a retried task of the same job (same run id).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs.core.config import ConfigError

log = logging.getLogger("selfalign")

LEASE_DIR = "_lease"
_GENERATION = re.compile(r"(\d{12})\.json")


class LeaseHeld(ConfigError):
    """Another run holds the lake: exit code 2 with the holder's name."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    host: str
    pid: int
    started_at: float  # epoch seconds
    renewed_at: float
    released: bool = False

    def held(self, lease_seconds: float, now: float) -> bool:
        """Not released, renewed within lease_seconds, and, when it ran on this host,
        its process still alive (a driver killed here frees the lake at once)."""
        if self.released or now - self.renewed_at >= lease_seconds:
            return False
        return self.host != socket.gethostname() or _alive(self.pid)

    def describe(self) -> str:
        return (f"run {self.run_id} on {self.host} (pid {self.pid}) since {_utc(self.started_at)}, "
                f"renewed {_utc(self.renewed_at)}")

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Holder | None:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None  # a torn write of a killed holder: treated as expired


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


class Store(ABC):
    """The four operations a lease needs, on one directory."""

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def read(self, name: str) -> bytes | None: ...

    @abstractmethod
    def create(self, name: str, data: bytes) -> bool:
        """Create `name` holding `data` if it does not exist; False if it does."""

    @abstractmethod
    def replace(self, name: str, data: bytes) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> None: ...


class LocalStore(Store):
    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)

    def names(self) -> list[str]:
        return [p.name for p in self.dir.iterdir()] if self.dir.is_dir() else []

    def read(self, name: str) -> bytes | None:
        with contextlib.suppress(FileNotFoundError):
            return (self.dir / name).read_bytes()
        return None

    def create(self, name: str, data: bytes) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name, then linked: link(2) fails if the name exists,
        # and a reader never sees a half-written lease.
        temp = self.dir / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        temp.write_bytes(data)
        try:
            os.link(temp, self.dir / name)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links (a FUSE mount such as /Volumes): O_EXCL instead
            return self._create_exclusive(name, data)
        finally:
            temp.unlink()

    def _create_exclusive(self, name: str, data: bytes) -> bool:
        try:
            fd = os.open(self.dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:  # a torn write reads as an expired lease
            out.write(data)
        return True

    def replace(self, name: str, data: bytes) -> None:
        temp = self.dir / f".{name}.{os.getpid()}.tmp"
        temp.write_bytes(data)
        os.replace(temp, self.dir / name)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / name).unlink()


class HadoopStore(Store):
    """Through the driver JVM's Hadoop FileSystem: whatever scheme the cluster can write."""

    CONDITIONAL = "fs.option.create.conditional.overwrite"  # Hadoop 3.4.2+ (HADOOP-19256)

    def __init__(self, spark: Any, directory: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self.dir = self._path(directory)
        conf = spark._jsparkSession.sessionState().newHadoopConf()
        self.fs = self.dir.getFileSystem(conf)
        # hdfs, abfs(s), gs, wasb: create without overwrite is atomic by itself; S3A only
        # with conditional create (HADOOP-19256), else it is a HEAD, then a PUT.
        self.conditional = str(self.fs.getScheme()) == "s3a"

    def _file(self, name: str) -> Any:
        return self._path(self.dir, name)

    def names(self) -> list[str]:
        try:
            return [str(status.getPath().getName()) for status in self.fs.listStatus(self.dir)]
        except Exception as exc:
            if "FileNotFoundException" in str(exc):
                return []
            raise

    def read(self, name: str) -> bytes | None:
        try:
            stream = self.fs.open(self._file(name))
        except Exception as exc:
            if "FileNotFoundException" in str(exc):
                return None
            raise
        try:
            return bytes(stream.readAllBytes())
        finally:
            stream.close()

    def create(self, name: str, data: bytes) -> bool:
        builder = self.fs.createFile(self._file(name)).overwrite(False)
        if self.conditional:
            builder = builder.must(self.CONDITIONAL, True)
        try:
            out = builder.build()
            out.write(bytearray(data))
            out.close()  # S3A PUTs here: the If-None-Match answer comes now
            return True
        except Exception as exc:
            text = str(exc)
            if any(mark in text for mark in ("FileAlreadyExistsException", "PreconditionFailed",
                                             "RemoteFileChangedException", "412")):
                return False
            if not (self.conditional and "IllegalArgumentException" in text):
                raise
        log.warning("this Hadoop's S3A has no conditional create (Hadoop 3.4.2+): two runs "
                    "starting in the same second could both take the lease")
        self.conditional = False
        return self.create(name, data)

    def replace(self, name: str, data: bytes) -> None:
        out = self.fs.create(self._file(name), True)
        out.write(bytearray(data))
        out.close()

    def delete(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.delete(self._file(name), False)


def _local_root(root: str) -> Path | None:
    """The lake's directory when it is on a local (or mounted) file system."""
    if root.startswith("file:"):
        return Path(root.removeprefix("file://").removeprefix("file:"))
    if "://" in root or root.startswith("dbfs:"):
        return None
    return Path(root).expanduser().resolve()


def store_for(spark: Any, root: str) -> Store | None:
    """The lease directory's store; None through Spark Connect on a remote lake (no
    driver JVM here to reach the store with the cluster's credentials)."""
    local = _local_root(root)
    if local is not None:
        return LocalStore(str(local / LEASE_DIR))
    if not hasattr(spark, "_jsparkSession"):
        return None
    return HadoopStore(spark, f"{root}/{LEASE_DIR}")


def _generations(store: Store) -> list[int]:
    return sorted(int(m.group(1)) for name in store.names() if (m := _GENERATION.fullmatch(name)))


def _name(generation: int) -> str:
    return f"{generation:012d}.json"


def current_holder(store: Store, lease_seconds: float, now: float | None = None) -> Holder | None:
    """The run holding the lease now, or None (released, expired or never taken)."""
    generations = _generations(store)
    if not generations:
        return None
    data = store.read(_name(generations[-1]))
    holder = Holder.decode(data) if data is not None else None
    moment = time.time() if now is None else now
    return holder if holder is not None and holder.held(lease_seconds, moment) else None


class Lease:
    """A taken lease: renewed by a daemon thread until `release`."""

    def __init__(self, store: Store, generation: int, holder: Holder, lease_seconds: float) -> None:
        self.store, self.generation, self.holder = store, generation, holder
        self.lease_seconds = lease_seconds
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_released, name="selfalign-lease",
                                        daemon=True)
        self._thread.start()

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                newest = _generations(self.store)
                if newest and newest[-1] != self.generation:
                    data = self.store.read(_name(newest[-1]))
                    other = Holder.decode(data) if data else None
                    self.lost = other.describe() if other else f"generation {newest[-1]}"
                    return
                self.holder = Holder(**{**asdict(self.holder), "renewed_at": time.time()})
                self.store.replace(_name(self.generation), self.holder.encode())
            except Exception as exc:  # a store hiccup: the next renewal tries again
                log.warning("lease renewal failed (retrying): %s", str(exc).splitlines()[0][:200])

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.lost is None:
            released = Holder(**{**asdict(self.holder), "released": True, "renewed_at": time.time()})
            with contextlib.suppress(Exception):
                self.store.replace(_name(self.generation), released.encode())


def acquire(store: Store, run_id: str, lease_seconds: float, where: str) -> Lease:
    """Take the lake's lease for `run_id`, or raise LeaseHeld naming the holder."""
    generations = _generations(store)
    newest = generations[-1] if generations else 0
    now = time.time()
    holder = current_holder(store, lease_seconds, now) if generations else None
    if holder is not None and holder.run_id != run_id:
        raise LeaseHeld(_held_message(where, holder, lease_seconds))
    mine = Holder(run_id, socket.gethostname(), os.getpid(), now, now)
    if not store.create(_name(newest + 1), mine.encode()):
        winner = current_holder(store, lease_seconds)
        raise LeaseHeld(_held_message(where, winner, lease_seconds) if winner else
                        f"lake {where} is being taken by another run right now: retry")
    for old in generations[:-1]:  # keep n (someone may be reading it), drop older ones
        store.delete(_name(old))
    return Lease(store, newest + 1, mine, lease_seconds)


def _held_message(where: str, holder: Holder, lease_seconds: float) -> str:
    return (f"lake {where} is in use by {holder.describe()}: one run writes a lake at a time; "
            f"wait for it, or if it was killed, rerun after {lease_seconds:.0f} s without renewal "
            f"(run.lease_seconds)")


def local_lease(root: str, run_id: str, lease_seconds: float) -> Lease | None:
    """A local lake's lease, taken before Spark starts (a refused run answers at once);
    None for a store URI, or a root this cannot use (the write check then says why)."""
    path = _local_root(root)
    if path is None or (path.exists() and not path.is_dir()):
        return None
    try:
        return acquire(LocalStore(str(path / LEASE_DIR)), run_id, lease_seconds, str(path))
    except OSError:  # not writable: the write check says so
        return None


@contextlib.contextmanager
def lake_lease(ctx: Any, taken: Lease | None = None) -> Iterator[Lease | None]:
    """The lake's lease around a writing command (`selfalign run`, `train`): `taken`
    (a local lake's, taken before Spark started), else taken now."""
    if taken is not None:
        lease = taken
    else:
        store = store_for(ctx.spark, ctx.lake.root)
        if store is None:
            log.warning("no lease on %s through Spark Connect: make sure one run writes it at "
                        "a time", ctx.lake.root)
            yield None
            return
        lease = acquire(store, ctx.run_id, ctx.cfg.run.lease_seconds, ctx.lake.root)
    try:
        yield lease
    finally:
        lease.release()


def lease_line(ctx: Any) -> str | None:
    """For `selfalign status`: who holds the lake now, if anyone."""
    store = store_for(ctx.spark, ctx.lake.root)
    holder = current_holder(store, ctx.cfg.run.lease_seconds) if store is not None else None
    return f"lease: held by {holder.describe()}" if holder else None
