"""execute: run each runnable response (its code, then its own tests) in the sandbox.

Input: responses with both code and tests, keyed by response_id. Every run becomes an
`executions` row (a verdict table); a run that did not pass is also a reject
(`execution_<status>`). A `sandbox-error` says nothing about the program (the sandbox
could not start it), so it is a transient failure: logged in `errors`, its response
left pending for the next run.

Parallelism: the work is done by sandbox processes; a task's threads only start them
and wait. Each task keeps `workers` programs running at once from a thread pool, fed
as a stream across Arrow batches, so one program at its wall timeout never idles the
others. `workers` = `sandbox.parallelism`, or by default two programs per executor
core, shared among the tasks the executor runs at once (local[k]: k; a cluster:
executor cores / task cpus when set): ceil(2 * os.cpu_count() / slots). Two per core
because part of a sandboxed run is waiting (namespace set-up and teardown, process
exit), not CPU: on 2 cores, 4 programs at once ran the sandbox phase 1.6x faster than
2 (bench/execute_bench.py). Not cpu_count per task: a 16-core executor running 16
tasks would then start 256 programs at once, each allowed sandbox.memory_bytes.

The isolation level is probed once on the driver at stage start: a level the config
asks for and this machine lacks stops the stage with the sandbox's message, instead
of filling `errors` with one sandbox-error per response.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.readers import runnable
from jobs.core.sections import SandboxConfig
from jobs.core.stage import Chunking, Stage, StageRun
from schemas import EXECUTIONS, RESPONSES
from schemas.outcome import (
    CPU_SECONDS,
    ITEM_ID,
    REJECT_DETAIL,
    REJECT_REASON,
    RETRY_ERROR,
    SOURCE_KEY,
    Reason,
    Source,
    outcome_schema,
)
from udfs.parse import ParsedResponse, first_line_after, program_for
from udfs.progress import ProgressSender, ProgressTarget
from udfs.sandbox import Limits, Outcome, choose_isolation, run_program

log = logging.getLogger("selfalign")

NAME = Source.EXECUTE
KEY = "response_id"
OUTCOME_SCHEMA = outcome_schema(EXECUTIONS, usage=True)
OUTPUT_ROWS = 64  # outcome rows per pandas frame handed back to Spark
QUEUED_PER_WORKER = 2  # programs submitted ahead of the pool, so no worker waits for input
PROGRAMS_PER_CORE = 2  # default concurrency: see the module docstring


@dataclass(frozen=True)
class SandboxPlan:
    """What an executor needs to run programs: plain values, pickled into the task."""

    limits: Limits
    isolation: str
    allow_weaker: bool
    workers: int | None  # sandbox.parallelism; None: from the executor's cores
    task_slots: int = 1  # tasks an executor runs at once, sharing its cores
    cgroup_parent: str | None = None  # sandbox.cgroup_parent
    partitions: int = 2  # tasks the responses are spread over
    progress: ProgressTarget | None = None  # where tasks send live progress

    @classmethod
    def from_config(cls, cfg: SandboxConfig, task_slots: int = 1) -> SandboxPlan:
        return cls(Limits.from_settings(cfg), cfg.isolation, cfg.allow_weaker, cfg.parallelism,
                   max(1, task_slots), cfg.cgroup_parent)

    def pool_size(self) -> int:
        """Programs one task runs at once; evaluated on the executor."""
        if self.workers:
            return self.workers
        return max(1, math.ceil(PROGRAMS_PER_CORE * (os.cpu_count() or 1) / self.task_slots))

    def describe(self) -> str:
        if self.workers:
            return f"{self.workers} programs at once per task"
        return (f"ceil({PROGRAMS_PER_CORE} x executor cores / {self.task_slots} concurrent tasks) "
                "programs at once per task")


# --- one program (plain Python) ----------------------------------------------------------

def program_of(code: str, tests: str) -> str:
    missing = [name for name, text in (("code", code), ("tests", tests)) if not (text or "").strip()]
    return program_for(ParsedResponse("", code or "", "", tests or "", missing))


def outcome_row(record: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The outcome row of one finished run: a verdict, a reject, or a retry."""
    rid = record[KEY]
    row: dict[str, Any] = {
        KEY: rid, "instruction_id": record["instruction_id"], "status": outcome.status,
        "passed": outcome.passed, "duration_s": round(outcome.duration_s, 4),
        "isolation": outcome.isolation, "exit_code": outcome.exit_code,
        "stdout_tail": outcome.stdout_tail, "stderr_tail": outcome.stderr_tail,
        "detail": outcome.detail or None, SOURCE_KEY: rid, ITEM_ID: rid,
        CPU_SECONDS: outcome.cpu_s,
    }
    if outcome.status == "sandbox-error":
        row[RETRY_ERROR] = outcome.detail or "sandbox error"
    elif not outcome.passed:
        row[REJECT_REASON] = Reason.execution(outcome.status)
        row[REJECT_DETAIL] = (outcome.detail or outcome.status)[:1000]
    return row


def execute_one(record: dict[str, Any], plan: SandboxPlan) -> dict[str, Any]:
    try:
        outcome = run_program(program_of(record["code"], record["tests"]), plan.limits,
                              plan.isolation, plan.allow_weaker,
                              cgroup_parent=plan.cgroup_parent,
                              tests_from_line=first_line_after(record["code"] or ""))
    except Exception as exc:  # the host failed (no temp dir, no fds): not the program's fault
        detail = f"sandbox: {type(exc).__name__}: {exc}"
        outcome = Outcome("sandbox-error", False, None, 0.0, "none", "", "", detail)
    return outcome_row(record, outcome)


def execution_rows(records: Iterable[dict[str, Any]], plan: SandboxPlan,
                   workers: int | None = None) -> Iterator[dict[str, Any]]:
    """Outcome rows of `records` (response_id, instruction_id, code, tests), in the order
    the runs finish, with `workers` programs running at once."""
    workers = workers or plan.pool_size()
    # Probe once here (cached per Python worker), not from every thread at first use.
    _, refusal = choose_isolation(plan.isolation, plan.allow_weaker, plan.cgroup_parent)
    if refusal is not None:
        refused = Outcome("sandbox-error", False, None, 0.0, "none", "", refusal, refusal)
        for record in records:
            yield outcome_row(record, refused)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        running: set[Future[dict[str, Any]]] = set()
        for record in records:
            if len(running) >= workers * QUEUED_PER_WORKER:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
            running.add(pool.submit(execute_one, record, plan))
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)


def _frames(rows: Iterator[dict[str, Any]], names: list[str]) -> Iterator[pd.DataFrame]:
    group: list[dict[str, Any]] = []
    for row in rows:
        group.append(row)
        if len(group) >= OUTPUT_ROWS:
            yield pd.DataFrame([{n: r.get(n) for n in names} for r in group], columns=pd.Index(names))
            group = []
    if group:
        yield pd.DataFrame([{n: r.get(n) for n in names} for r in group], columns=pd.Index(names))


# --- the stage ---------------------------------------------------------------------------

_LOCAL = re.compile(r"local(?:-cluster)?\[(\*|\d+)")


def task_slots(ctx: Context) -> int:
    """Tasks one executor runs at once, from the Spark config (1 when unknown)."""
    conf = ctx.spark.conf
    try:
        master = conf.get("spark.master", "") or ""
        found = _LOCAL.match(master)
        if found:
            return os.cpu_count() or 1 if found.group(1) == "*" else int(found.group(1))
        cores = int(conf.get("spark.executor.cores", "0") or 0)
        per_task = int(conf.get("spark.task.cpus", "1") or 1)
    except Exception:  # Spark Connect may not expose these
        return 1
    return max(1, cores // max(1, per_task)) if cores else 1


def transform(responses: DataFrame, plan: SandboxPlan) -> DataFrame:
    """(response_id, instruction_id, code, tests) -> one outcome row per response."""
    names = OUTCOME_SCHEMA.fieldNames()

    def run_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        records = (record for batch in batches for record in batch.to_dict("records"))
        progress = ProgressSender(plan.progress)

        def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for row in rows:
                progress.add(1, 1)
                yield row
            progress.close()

        yield from _frames(counted(execution_rows(records, plan)), names)

    return (
        responses.select(KEY, "instruction_id", "code", "tests")
        .repartition(plan.partitions, KEY)
        .mapInPandas(run_batches, schema=OUTCOME_SCHEMA)
    )


def read(ctx: Context) -> DataFrame:
    return runnable(ctx.lake.read(RESPONSES)).select(KEY, "instruction_id", "code", "tests")


def settings(run: StageRun[SandboxPlan]) -> SandboxPlan:
    """The plan executors get; stops the stage when the config refuses this machine's level."""
    cfg = run.cfg.sandbox
    level, refusal = choose_isolation(cfg.isolation, cfg.allow_weaker, cfg.cgroup_parent)
    if refusal is not None:
        raise StageError(f"{NAME}: {refusal}")
    if level == "process":
        log.warning("[%s] isolation 'process': programs see the host's network and files", NAME)
    elif level == "bwrap":
        log.warning("[%s] isolation 'bwrap' (no cgroup here): each program's memory and CPU as a "
                    "whole are polled by the runner, not enforced by the kernel", NAME)
    plan = replace(SandboxPlan.from_config(cfg, task_slots(run.ctx)), partitions=run.tasks,
                   progress=run.progress)
    log.info("[%s] isolation %s; %s", NAME, level, plan.describe())
    return plan


STAGE = Stage(
    name=NAME, output=EXECUTIONS, key=KEY, read=read, settings=settings, transform=transform,
    chunking=Chunking(rows=lambda cfg: cfg.run.execute_chunk_rows), verdicts=True,
    progress_unit="programs",
)
