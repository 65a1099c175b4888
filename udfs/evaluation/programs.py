"""The programs that run in the sandbox: a completion's code, then what tests it.

The code under test is the prompt followed by the completion; when the completion already
defines the entry point at top level (a model that rewrites the whole function, MBPP, a
reference that is a full def) it is appended to the prompt after a newline, so the
prompt's stub is replaced while its imports and helper functions stay. A completion
holding a Markdown code block is reduced to the block that defines the entry point.

- HumanEval and MBPP: the code, then the task's own tests (`program_with_tests`).
- EvalPlus: the code, then the modules of udfs/evaluation/shipped read as text, then one
  call of their entry point with its arguments as literals; the inputs travel pickled
  and base64-encoded (`ground_truth_program`, `check_program`).
"""

from __future__ import annotations

import base64
import functools
import pickle
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from udfs.evaluation.problems import Problem, oracle, problem_inputs
from udfs.parse import first_line_after

SHIPPED = "udfs.evaluation.shipped"
# The parts of each program after the code under test, in order (see shipped/__init__.py).
GROUND_TRUTH_PARTS = ("calls.py", "ground_truth.py")
CHECK_PARTS = ("calls.py", "compare.py", "check.py")

GROUND_TRUTH_FILE = "expected.json"


# --- from a completion to code ------------------------------------------------------------

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


def defines(code: str, entry_point: str) -> bool:
    """Whether `code` defines `entry_point` at top level."""
    pattern = rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\("
    return re.search(pattern, code, flags=re.MULTILINE) is not None


def extract_code(completion: str, entry_point: str) -> str:
    """The completion, or the Markdown code block in it that defines the entry point."""
    if "```" not in completion:
        return completion
    blocks = _FENCE.findall(completion)
    if not blocks:
        return completion
    defining = [b for b in blocks if defines(b, entry_point)]
    return (defining or blocks)[0]


def solution_code(problem: Problem, completion: str) -> str:
    """The code under test for a completion: the prompt, then the completion."""
    code = extract_code(completion, problem.entry_point)
    if defines(code, problem.entry_point):
        # After the prompt, not instead of it: its imports and helpers stay, its stub is replaced.
        return problem.prompt.rstrip("\n") + "\n\n\n" + code.lstrip("\n")
    return problem.prompt + code


def tests_start(problem: Problem, completion: str) -> int:
    """The first line after the code under test in every program built here: what comes
    next (the task's tests, the shipped harness) is the tests (the sandbox's
    tests_from_line; asserts of the code itself are its own business)."""
    return first_line_after(solution_code(problem, completion))


def program_with_tests(problem: Problem, completion: str) -> str:
    """The program testing a HumanEval or MBPP completion with the task's own tests."""
    code = solution_code(problem, completion)
    if problem.benchmark == "humaneval":
        return f"{code}\n\n\n{problem.tests}\n\ncheck({problem.entry_point})\n"
    if problem.benchmark == "mbpp":
        return f"{code}\n\n\n{problem.tests}"
    raise ValueError(f"{problem.benchmark} is tested against expected outputs (check_program)")


# --- EvalPlus: the shipped harness ----------------------------------------------------------

@functools.cache
def shipped_source(name: str) -> str:
    """The text of one module of udfs/evaluation/shipped, as programs hold it."""
    return resources.files(SHIPPED).joinpath(name).read_text(encoding="utf-8")


def harness_namespace() -> dict[str, Any]:
    """Every shipped part run in one namespace, as programs run them (for tests)."""
    namespace: dict[str, Any] = {"__name__": "selfalign_harness"}
    for name in dict.fromkeys([*GROUND_TRUTH_PARTS, *CHECK_PARTS]):
        exec(compile(shipped_source(name), f"<selfalign harness {name}>", "exec"), namespace)
    return namespace


def _blob(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value, protocol=4)).decode()


def _program(code: str, parts: Sequence[str], entry: str, **arguments: Any) -> str:
    """The code under test, the shipped parts, and `entry(name=literal, ...)` as last line."""
    call = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
    return "\n\n".join([code, *(shipped_source(part) for part in parts)]) + f"\n\n{entry}({call})\n"


def output_file(variant: str) -> str:
    """The ground truth's outputs of one variant: one pickle per input, in input order."""
    return f"{variant}.pickle"  # as shipped/ground_truth.py and shipped/check.py name it


def ground_truth_program(problem: Problem) -> str:
    """Runs the reference on every input of each variant: writes output_file(variant) per
    variant and GROUND_TRUTH_FILE (CPU seconds per input, and the harness's own)."""
    inputs = {variant: problem_inputs(problem, variant) for variant in problem.variants}
    return _program(solution_code(problem, problem.reference), GROUND_TRUTH_PARTS,
                    "_sa_ground_truth", entry_point=problem.entry_point, inputs_blob=_blob(inputs),
                    oracle=oracle(problem), output_file=GROUND_TRUTH_FILE)


def check_program(problem: Problem, completion: str, variant: str,
                  limits: Sequence[float]) -> str:
    """The program comparing a completion's outputs on one variant's inputs with the
    reference's, read from output_file(variant) in its dir. limits: CPU seconds per input
    (ExecSettings.input_limits of the reference's)."""
    cases = problem_inputs(problem, variant)
    if len(limits) != len(cases):
        raise ValueError(f"{problem.task_id}: ground truth of {len(limits)} inputs for {len(cases)}")
    return _program(solution_code(problem, completion), CHECK_PARTS, "_sa_check",
                    entry_point=problem.entry_point, inputs_blob=_blob(cases), atol=problem.atol,
                    oracle=oracle(problem), limits=list(limits), variant=variant)
