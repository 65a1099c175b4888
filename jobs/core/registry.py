"""The stage DAG, in execution order (cheap filters first, GPU stages last), read from the
stages' declarations: the CLI, `status` and `report` iterate over it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.core.stage import Stage, Step
from jobs.stages import (
    concepts,
    decontaminate,
    dedup,
    execute,
    export,
    extract,
    instruct,
    judge,
    respond,
    select,
    train,
    typecheck,
)

DAG: tuple[Stage[Any] | Step, ...] = (
    extract.STAGE,
    decontaminate.STAGE,
    typecheck.STAGE,
    dedup.STAGE,
    judge.STAGE,
    concepts.STAGE,
    instruct.STAGE,
    respond.STAGE,
    execute.STAGE,
    select.STAGE,
    export.STEP,  # files, not a table: the sft table as the trainer reads it
    train.STEP,  # a checkpoint; only with train.in_dag or when named (--stages train)
)
# Steps `selfalign run` takes only when asked: by name, or by their config switch.
OPTIONAL: dict[str, Callable[[Any], bool]] = {train.NAME: lambda cfg: cfg.train.in_dag}
STAGES: dict[str, Stage[Any] | Step] = {stage.name: stage for stage in DAG}
# Stages that call the model: they need `llm.engine`.
ENGINE_STAGES = frozenset(stage.name for stage in DAG if stage.needs_engine)
# Stages that write a table from pending input (not steps): what `status` counts.
TABLE_STAGES: dict[str, Stage[Any]] = {s.name: s for s in DAG if isinstance(s, Stage)}


def stage_named(name: str) -> Stage[Any] | Step:
    return STAGES[name]


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


def stages_to_run(cfg: Any, only: str | None = None, until: str | None = None,
                  start: str | None = None) -> list[str]:
    """`select_stages`, less the optional steps a whole-DAG run leaves out unless their
    config switch is on (a step named in --stages always runs)."""
    chosen = select_stages(only, until, start)
    if only:
        return chosen
    return [name for name in chosen if name not in OPTIONAL or OPTIONAL[name](cfg)]


def stage_order(name: str) -> tuple[int, str]:
    """Where a stage sorts in reports: DAG order; names no longer in the DAG last, by name
    (a lake keeps the rows of stages a later release renamed)."""
    order = list(STAGES)
    return (order.index(name) if name in order else len(order), name)
