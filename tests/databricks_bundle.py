"""Checks of conf/databricks/databricks.yml: Databricks' own typed classes for the jobs,
and the bundle-level rules those classes do not carry.

Each job under `resources.jobs` is loaded with `databricks.bundles.jobs.Job.from_dict`
from Databricks' `databricks-bundles` package (pinned in the `test` extra): its
generated dataclasses follow the Jobs API, refuse an unknown field ("Unexpected field
'python_wheel_tsk' for class Task"), an unknown enum value and a count that is not an
integer, and take `${var.x}` anywhere a value may be a variable.

The package models resources only: the bundle's top level (variables, targets, workspace,
run_as) is the Databricks CLI's own configuration, so the rules the CLI applies there are
written out here, each after the CLI's own check:

- every `${var.x}` names a declared variable, and every declared variable has a value in
  every target (a default or the target's own); the CLI stops with "no value assigned to
  required variable x" otherwise, even for a variable the target never uses. Only a
  production target may leave some to the deployer (`--var x=...`): those named in
  `deployer_supplies`, so `bundle validate -t dev` needs no flag;
- a target with `mode: production` sets `workspace.root_path` ("target with 'mode:
  production' must set 'workspace.root_path' to make sure only one copy is deployed")
  and a `run_as` ("'run_as' must be set for all jobs when using 'mode: production'");
  ours must be a service principal given by a variable, so no identity is committed.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from databricks.bundles.core import Variable
from databricks.bundles.jobs import Job, JobRunAs

T = TypeVar("T")

# ${var.name}, ${workspace.file_path}, ${bundle.target}: bundle substitutions.
SUBSTITUTION = re.compile(r"\$\{([a-z_]+(?:\.[A-Za-z0-9_]+)+)\}")
MODES = {"development", "production"}


def typed_jobs(raw: dict[str, Any]) -> dict[str, Job]:
    """Every job of the bundle as Databricks' typed Job; raises ValueError or TypeError
    on a field or value the Jobs API does not have."""
    return {key: Job.from_dict(job) for key, job in raw["resources"]["jobs"].items()}


def fixed(value: T | Variable[Any] | None) -> T:
    """A typed field's own value, where the bundle writes one (not `${var...}`, not unset)."""
    assert value is not None and not isinstance(value, Variable), f"expected a value, found {value}"
    return value


def fixed_list(value: list[T | Variable[Any]] | Variable[Any]) -> list[T]:
    """A typed list field's items, each its own value."""
    return [fixed(item) for item in fixed(value)]


def references(document: Any) -> set[str]:
    """Every ${...} substitution anywhere in the document."""
    if isinstance(document, dict):
        return {ref for value in document.values() for ref in references(value)}
    if isinstance(document, list):
        return {ref for value in document for ref in references(value)}
    return set(SUBSTITUTION.findall(document)) if isinstance(document, str) else set()


def _whole_variable(value: Any) -> str | None:
    found = SUBSTITUTION.fullmatch(value) if isinstance(value, str) else None
    return found.group(1).removeprefix("var.") if found and found.group(1).startswith("var.") else None


def bundle_errors(raw: dict[str, Any], deployer_supplies: frozenset[str] = frozenset()) -> list[str]:
    """The bundle-level rules above, one line per breach (empty when the bundle keeps them)."""
    errors: list[str] = []
    declared: dict[str, Any] = raw.get("variables") or {}
    used = {ref.split(".", 1)[1] for ref in references(raw) if ref.startswith("var.")}
    errors += [f"undeclared variable {name}" for name in sorted(used - set(declared))]
    targets: dict[str, Any] = raw.get("targets") or {}
    if not targets:
        errors.append("no targets")
    for name, target in targets.items():
        target = target or {}
        values = target.get("variables") or {}
        errors += [f"target {name}: undeclared variable {v}" for v in sorted(set(values) - set(declared))]
        mode = target.get("mode")
        supplied = deployer_supplies if mode == "production" else frozenset()
        unset = [v for v, spec in declared.items()
                 if "default" not in (spec or {}) and v not in values and v not in supplied]
        errors += [f"target {name}: no value assigned to required variable {v}" for v in unset]
        if mode is not None and mode not in MODES:
            errors.append(f"target {name}: mode {mode!r} is not one of {sorted(MODES)}")
        if mode != "production":
            continue
        if not (target.get("workspace") or {}).get("root_path"):
            errors.append(f"target {name}: 'mode: production' must set 'workspace.root_path'")
        run_as = target.get("run_as") or raw.get("run_as")
        if not run_as:
            errors.append(f"target {name}: 'mode: production' must set 'run_as'")
            continue
        try:
            identity = JobRunAs.from_dict(run_as)
        except (ValueError, TypeError) as exc:
            errors.append(f"target {name}: run_as: {exc}")
            continue
        principal = _whole_variable(run_as.get("service_principal_name"))
        if identity.user_name is not None or identity.group_name is not None or principal is None:
            errors.append(f"target {name}: run_as must be service_principal_name: ${{var.<name>}}")
        elif principal not in declared:
            errors.append(f"target {name}: run_as names undeclared variable {principal}")
    return errors
