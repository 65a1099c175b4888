"""The layout's rules, checked on the source: no import cycles, udfs/ independent of jobs/,
no stage importing another stage or the CLI, every stage declared the same way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("jobs", "udfs", "schemas")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports at module level or in functions; imports under
    `if TYPE_CHECKING:` are left out (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ is imported with any of its modules: count that edge too.
    for name in list(graph):
        parent = name.rpartition(".")[0]
        if parent in graph and parent != name:
            graph[name].add(parent)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package importing its own submodule is how packages re-export: not a cycle
            # unless the submodule imports back something other than the package itself.
            if state.get(nxt) == 1:
                if nxt == node.rpartition(".")[0] or node == nxt.rpartition(".")[0]:
                    continue
                return [*path[path.index(nxt):], nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    assert find_cycle(graph) is None


def test_udfs_and_schemas_import_nothing_from_jobs(graph: dict[str, set[str]]) -> None:
    offenders = {name: sorted(d for d in deps if d.startswith("jobs"))
                 for name, deps in graph.items() if name.startswith(("udfs", "schemas"))}
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_no_stage_imports_another_stage_or_the_cli(graph: dict[str, set[str]]) -> None:
    shared = {"jobs.stages", "jobs.stages.generation"}  # the package, and LLM-stage plumbing
    offenders = {}
    for name, deps in graph.items():
        if name.startswith("jobs.stages.") and name not in shared:
            # A stage's own modules (evaluate_plan for evaluate) are part of that stage.
            own = name + "_"
            bad = sorted(d for d in deps if (d.startswith("jobs.stages.") and d not in shared
                                             and not d.startswith(own))
                         or d in ("jobs.cli", "jobs.submit"))
            if bad:
                offenders[name] = bad
    assert offenders == {}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_dag_stage_is_a_declaration() -> None:
    from jobs.core.registry import DAG
    from jobs.core.stage import Stage, Step

    assert [type(s) for s in DAG if not isinstance(s, Stage | Step)] == []
    assert len({s.name for s in DAG}) == len(DAG)
