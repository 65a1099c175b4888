"""The stage DAG, in execution order (cheap filters first, GPU stages last)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from jobs.core.context import Context
from jobs.core.runner import StageSummary

# stage name -> module exposing `run(ctx) -> StageSummary`
STAGES: dict[str, str] = {
    "extract": "jobs.stages.extract",
    "decontaminate": "jobs.stages.decontaminate",
    "typecheck": "jobs.stages.typecheck",
    "dedup": "jobs.stages.dedup",
    "judge": "jobs.stages.judge",
    "concepts": "jobs.stages.concepts",
    "instruct": "jobs.stages.instruct",
    "respond": "jobs.stages.respond",
    "execute": "jobs.stages.execute",
    "select": "jobs.stages.select",
    "export": "jobs.stages.export",  # files, not a table: the sft table as the trainer reads it
}

# Stages that call the model: they need `llm.engine`.
ENGINE_STAGES = frozenset({"judge", "concepts", "instruct", "respond"})


def stage_runner(name: str) -> Callable[[Context], StageSummary]:
    if name not in STAGES:
        raise KeyError(name)
    return importlib.import_module(STAGES[name]).run


def select_stages(only: str | None = None, until: str | None = None,
                  start: str | None = None) -> list[str]:
    """Stages to run, in DAG order, from the CLI's --stages / --from / --until."""
    order = list(STAGES)
    for given in (until, start, *(only.split(",") if only else [])):
        if given is not None and given.strip() not in STAGES:
            raise ValueError(f"unknown stage '{given}'; stages are: {', '.join(order)}")
    if only:
        wanted = {s.strip() for s in only.split(",")}
        return [s for s in order if s in wanted]
    first = order.index(start) if start else 0
    last = order.index(until) if until else len(order) - 1
    return order[first : last + 1]
