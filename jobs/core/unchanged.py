"""A nightly run over an unchanged lake skips its idle stages without a Spark job.

A stage with nothing pending costs one check, but that check is a Spark query over its
input and `progress`, and in a fresh JVM the first Delta read alone takes ~7 s (class
loading, encoders, the snapshot's own jobs). Whether anything changed is cheaper to
tell: a Delta table's version is the name of its newest commit file, and extract's
input is a list of files with sizes, times and (on object stores) ETags.

The record: a run in which nothing was committed (every stage it ran found nothing
pending, and nobody else wrote to the lake meanwhile: the state at its end equals the
state at its start) writes `lake.root/_staging/idle-stages.json`, that state and the
stages known idle in it. The next run computes the state again; while it matches,
those stages are skipped. Anything different (a new or rewritten input file, any
commit, a user's DELETE, another config, another version of this code) and every stage
checks with Spark; the first run after a change therefore checks, and the one after it
skips. Within a run, once any stage has done work (committed rows, or had rows fail),
no later stage is skipped: that work may be what a later stage reads.

The state leaves out `runs`, the one table every stage run and the export step write
and no stage reads to find its pending input.

Off (every stage checks with Spark, as before) through Spark Connect (no driver JVM in
this process), with catalog tables (their files' location belongs to the catalog), and
whenever listing fails.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from jobs.core.context import Context
from jobs.core.stage import Stage, StageSummary, Step
from schemas import RUNS, TABLES

log = logging.getLogger("selfalign")

RECORD = "_staging/idle-stages.json"
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
InputFile = tuple[str, int, int, str]  # path, bytes, modified (ms), ETag ("" if none)


class HadoopFiles:
    """The few Hadoop FileSystem calls this needs, through the driver JVM (py4j)."""

    def __init__(self, spark: SparkSession) -> None:
        context: Any = spark.sparkContext  # raises through Spark Connect
        self._jvm: Any = context._jvm
        # The session's Hadoop conf: it holds credentials set with spark.conf.set too.
        jsession: Any = spark._jsparkSession
        self._conf: Any = jsession.sessionState().newHadoopConf()

    def _path(self, text: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(text)

    def _fs(self, path: Any) -> Any:
        return path.getFileSystem(self._conf)

    def _glob(self, pattern: str) -> Any:
        path = self._path(pattern)
        return self._fs(path).globStatus(path)

    def latest_commit(self, table: str) -> str:
        """A Delta table's newest commit as "version modified staged" ("none" without a
        table). globStatus sorts by name and commit files are zero-padded versions, so
        the newest is the last `N.json` (a compacted `a.b.compacted.json` sorts before
        `b.json`); its time tells a table rebuilt to the same version apart. Commits of
        coordinated tables wait under _staged_commits or _commits until backfilled."""
        found = self._glob(f"{table}/_delta_log/{{[0-9]*.json,_staged_commits/*,_commits/*}}")
        staged: list[str] = []
        newest = "none"
        for index in range(len(found or []) - 1, -1, -1):  # py4j: one call per element
            status = found[index]
            name = status.getPath().getName()
            if _COMMIT_FILE.match(name):
                newest = f"{int(name[:20])} {status.getModificationTime()}"
                break
            staged.append(name)
        return f"{newest} staged={','.join(sorted(staged))}"

    def files(self, pattern: str) -> list[InputFile]:
        """Every file a Spark path or glob reads (recursively), with size, time and ETag."""
        fs = self._fs(self._path(pattern))
        found: list[InputFile] = []
        for status in self._glob(pattern) or []:
            if not status.isDirectory():
                found.append(self._describe(status))
                continue
            listing = fs.listFiles(status.getPath(), True)
            while listing.hasNext():
                found.append(self._describe(listing.next()))
        return sorted(found)

    @staticmethod
    def _describe(status: Any) -> InputFile:
        try:  # S3A and ABFS listings carry the ETag (Hadoop's EtagSource); local files do not
            etag = str(status.getEtag() or "")
        except Exception:
            etag = ""
        return status.getPath().toString(), status.getLen(), status.getModificationTime(), etag

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
        """Write a sibling, then rename it over the file: a crash leaves the old record."""
        path = self._path(file)
        fs = self._fs(path)
        scratch = self._path(f"{file}.{uuid.uuid4().hex}.tmp")
        stream = fs.create(scratch, True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
        fs.delete(path, False)
        if not fs.rename(scratch, path):
            fs.delete(scratch, False)
            raise OSError(f"could not rename {scratch} to {path}")


@functools.cache
def code_digest() -> str:
    """This code's own sources: a release that changes what a stage reads must not find
    the stages idle by a record an older release left."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for package in ("jobs", "udfs", "schemas"):
        for source in sorted((root / package).rglob("*.py")):
            digest.update(source.relative_to(root).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def lake_state(ctx: Context, files: HadoopFiles, inputs: list[InputFile]) -> str:
    """A digest of what every stage's pending input depends on."""
    parts = [f"config {ctx.cfg.fingerprint()}", f"code {code_digest()}"]
    for name in sorted(TABLES):
        if name != RUNS.name:
            parts.append(f"table {name} {files.latest_commit(ctx.lake.path(name))}")
    parts.extend("input " + " ".join(map(str, entry)) for entry in inputs)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class IdleRecord:
    """What a run that committed nothing leaves for the next: the state, the idle stages."""

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
    """Stages a run may skip: those the last record holds, if nothing changed since."""
    return record.stages if record is not None and record.state == state else frozenset()


def next_record(start: str, end: str, skippable: frozenset[str], ran: set[str],
                found_idle: set[str]) -> IdleRecord | None:
    """The record this run leaves, or None when the lake changed during it (its own
    commits or anyone else's): the next run then checks every stage with Spark. Stages
    it did not run stay idle if they were before."""
    if end != start:
        return None
    return IdleRecord(end, frozenset(found_idle) | (skippable - ran))


class IdleLedger:
    """Reads the record at the start of `selfalign run` and writes the next at its end."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._files: HadoopFiles | None = None
        self._inputs: list[InputFile] = []
        self._start = ""
        self._skippable: frozenset[str] = frozenset()
        self._ran: set[str] = set()
        self._idle: set[str] = set()
        self._worked = False  # a stage of this run committed rows or had rows fail
        if ctx.lake.namespace is not None:
            log.info("catalog tables: every stage checks for pending input with Spark")
            return
        try:
            files = HadoopFiles(ctx.spark)
            # Listed once, before extract reads them: a file that lands during the run
            # is missing from the record, so the next run checks with Spark.
            self._inputs = files.files(ctx.cfg.input.path)
            self._start = lake_state(ctx, files, self._inputs)
        except Exception as exc:  # Spark Connect, an unreachable store
            log.info("every stage checks for pending input with Spark (%s)", _first_line(exc))
            return
        self._files = files
        try:
            record = IdleRecord.from_json(files.read(self._record_path))
        except Exception as exc:  # e.g. a checksum error: no record, and this run rewrites it
            log.info("ignoring an unreadable %s (%s)", RECORD, _first_line(exc))
            record = None
        self._skippable = still_idle(record, self._start)

    @property
    def _record_path(self) -> str:
        return f"{self._ctx.lake.root}/{RECORD}"

    def skips(self, stage: Stage[Any] | Step) -> bool:
        """True (and logged) when the stage is still idle since the last run; False when
        it is to run now (`finished` follows if it ends)."""
        self._ran.add(stage.name)
        if self._worked or not _may_skip(stage) or stage.name not in self._skippable:
            return False
        log.info("[%s] nothing pending (input, tables and config unchanged since the last run)", stage.name)
        self._idle.add(stage.name)
        return True

    def finished(self, stage: Stage[Any] | Step, summary: StageSummary) -> None:
        """The stage ended: idle if it found nothing pending, else it worked."""
        if not _may_skip(stage):
            return  # a step writes files (and `runs`), nothing a stage reads
        if summary.rows_in or summary.rows_failed:
            self._worked = True
        else:
            self._idle.add(stage.name)

    def save(self) -> None:
        if self._files is None:
            return
        try:
            end = lake_state(self._ctx, self._files, self._inputs)
            record = next_record(self._start, end, self._skippable, self._ran, self._idle)
            if record is not None:
                self._files.write(self._record_path, record.to_json())
        except Exception as exc:  # the next run then checks every stage with Spark
            log.warning("could not record idle stages: %s", _first_line(exc))


def _may_skip(stage: Stage[Any] | Step) -> bool:
    # A step (export) writes files every run.
    return isinstance(stage, Stage)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
