"""A nightly run over an unchanged lake skips its idle stages without a Spark job.

A stage with nothing pending costs one check, but that check is a Spark query over its
input and `progress`, and in a fresh JVM the first Delta read alone takes ~7 s (class
loading, encoders, the snapshot's own jobs). Whether anything changed is cheaper to
tell: a Delta table's version is the name of the newest commit file in its _delta_log,
and extract's input is a list of files with sizes and modification times. At the end of
`selfalign run` the runner records that state (with the config's fingerprint) and the
stages that ended with nothing pending. The next run lists the same things; while they
match, those stages are still idle, since their input tables, their `progress` rows and
the config are what they were. Anything different (a new or rewritten input file, any
commit, a user's DELETE, another config) and every stage checks with Spark as before.

Why a stage that ended idle stays idle until something changes: stages write only their
own output tables, `rejects`, `errors` and their own `progress` rows, and read only
tables written upstream, so nothing a later stage commits makes an earlier one pending.

Classic Spark only: the listing goes through the driver's Hadoop FileSystem (local, s3,
abfss, dbfs alike). Through Spark Connect there is no JVM in this process: no record,
every stage checks with Spark.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from jobs.core.context import Context
from jobs.core.runner import StageSummary
from jobs.core.stage import Stage, Step
from schemas import TABLES

log = logging.getLogger("selfalign")

RECORD = "_staging/idle-stages.json"
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


class HadoopFiles:
    """The few Hadoop FileSystem calls this needs, through the driver JVM (py4j)."""

    def __init__(self, spark: SparkSession) -> None:
        context: Any = spark.sparkContext  # raises through Spark Connect
        self._jvm: Any = context._jvm
        self._conf: Any = context._jsc.hadoopConfiguration()

    def _path(self, text: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(text)

    def _fs(self, path: Any) -> Any:
        return path.getFileSystem(self._conf)

    def latest_commit(self, table: str) -> str:
        """A Delta table's newest commit, as "version modified" ("none" without a table).

        Hadoop's globStatus sorts by name and commit files are zero-padded versions, so
        the last `*.json` is the newest (a compacted `a.b.compacted.json` sorts before
        `b.json`). Its modification time tells a table dropped and rebuilt to the same
        version apart.
        """
        commits = self._glob(f"{table}/_delta_log/[0-9]*.json")
        for status in reversed(commits):
            match = _COMMIT_FILE.match(status.getPath().getName())
            if match:
                return f"{int(match.group(1))} {status.getModificationTime()}"
        return "none"

    def _glob(self, pattern: str) -> list[Any]:
        path = self._path(pattern)
        return list(self._fs(path).globStatus(path) or [])

    def files(self, pattern: str) -> list[tuple[str, int, int]]:
        """(path, bytes, modified) of every file a Spark path or glob reads, recursively."""
        path = self._path(pattern)
        fs = self._fs(path)
        found: list[tuple[str, int, int]] = []
        for status in fs.globStatus(path) or []:
            if not status.isDirectory():
                found.append((status.getPath().toString(), status.getLen(), status.getModificationTime()))
                continue
            listing = fs.listFiles(status.getPath(), True)
            while listing.hasNext():
                entry = listing.next()
                found.append((entry.getPath().toString(), entry.getLen(), entry.getModificationTime()))
        return sorted(found)

    def read(self, file: str) -> str | None:
        path = self._path(file)
        fs = self._fs(path)
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            return self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()

    def write(self, file: str, text: str) -> None:
        path = self._path(file)
        stream = self._fs(path).create(path, True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()


def lake_state(ctx: Context, files: HadoopFiles, inputs: list[tuple[str, int, int]]) -> str:
    """A digest of what every stage's pending input depends on: the config, each table's
    Delta version and extract's input files."""
    parts = [f"config {ctx.cfg.fingerprint()}"]
    for name in sorted(TABLES):
        parts.append(f"table {name} {files.latest_commit(ctx.lake.path(name))}")
    parts.extend(f"input {path} {size} {modified}" for path, size, modified in inputs)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class IdleRecord:
    """What a run leaves for the next: the lake's state at its end, and the stages idle then."""

    state: str
    stages: frozenset[str]

    def to_json(self) -> str:
        return json.dumps({"state": self.state, "idle_stages": sorted(self.stages)})

    @classmethod
    def from_json(cls, text: str | None) -> IdleRecord | None:
        """None for a missing or unreadable record: then nothing is skipped."""
        try:
            raw = json.loads(text or "")
            return cls(str(raw["state"]), frozenset(map(str, raw["idle_stages"])))
        except (ValueError, KeyError, TypeError):
            return None


def still_idle(record: IdleRecord | None, state: str) -> frozenset[str]:
    """Stages a run may skip: those the last run left idle, if nothing changed since."""
    return record.stages if record is not None and record.state == state else frozenset()


def next_record(start: str, end: str, skippable: frozenset[str], ran: set[str],
                ended_idle: set[str]) -> IdleRecord:
    """Stages idle at the end of this run: those that ended idle in it, and those idle
    before it that it did not run, if it committed nothing (else their input may have
    changed under them)."""
    carried = skippable - ran if end == start else frozenset()
    return IdleRecord(end, frozenset(ended_idle) | carried)


class IdleLedger:
    """The record's reader and writer around one `selfalign run`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._ran: set[str] = set()
        self._idle: set[str] = set()
        self._files: HadoopFiles | None = None
        self._inputs: list[tuple[str, int, int]] = []
        self._start: str | None = None
        self._skippable: frozenset[str] = frozenset()
        try:
            self._files = HadoopFiles(ctx.spark)
            # Listed once, before extract reads them: a file that lands during the run
            # is then missing from the record, so the next run checks with Spark.
            self._inputs = self._files.files(ctx.cfg.input.path)
            self._start = lake_state(ctx, self._files, self._inputs)
            self._skippable = still_idle(IdleRecord.from_json(self._files.read(self._record)), self._start)
        except Exception as exc:  # Spark Connect, an unreachable store: check every stage with Spark
            log.debug("no idle record: %s", exc)
            self._files = None

    @property
    def _record(self) -> str:
        return f"{self._ctx.lake.root}/{RECORD}"

    def skips(self, stage: Stage[Any] | Step) -> bool:
        """True (and logged) when the stage is still idle since the last run; False when
        it is to run now (then `finished` follows if it ends)."""
        self._ran.add(stage.name)
        if not _may_skip(stage) or stage.name not in self._skippable:
            return False
        log.info("[%s] nothing pending (input, tables and config unchanged since the last run)", stage.name)
        self._idle.add(stage.name)
        return True

    def finished(self, stage: Stage[Any] | Step, summary: StageSummary) -> None:
        """The stage ended; it is idle now unless some rows failed and stay pending."""
        if _may_skip(stage) and not summary.rows_failed:
            self._idle.add(stage.name)

    def save(self) -> None:
        if self._files is None or self._start is None:
            return
        try:
            end = lake_state(self._ctx, self._files, self._inputs)
            record = next_record(self._start, end, self._skippable, self._ran, self._idle)
            self._files.write(self._record, record.to_json())
        except Exception as exc:  # the next run then checks every stage with Spark
            log.warning("could not record idle stages: %s", exc)


def _may_skip(stage: Stage[Any] | Step) -> bool:
    # A step (export) writes files every run; evaluate's hooks must run every time.
    return isinstance(stage, Stage) and not stage.runs_when_idle
