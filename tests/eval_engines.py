"""Test-double engines for `selfalign evaluate`, importable by Spark executors.

- WrongEngine answers every prompt with code that runs but returns None: a HumanEval
  prompt gets the body `return None`, an MBPP prompt a function of the name its assert
  calls. Every task must then score 0 (none of the first tasks expects None).
- EmptyEngine answers the empty string.
- InstructReferenceEngine answers a prompt in the instruct format (the SFT template's
  prompt, then an open code block) with the task's reference solution, the closing fence
  and chatter after it (which the stop must cut); any other prompt gets code that does
  nothing. It finds the task by the function prompt (HumanEval) or the assertion (MBPP)
  the instruct prompt shows.
"""

from __future__ import annotations

import functools
import re

from tests.fake_engine import FakeEngine
from tests.paths import BENCHMARKS
from udfs.evaluation import DEFAULT_FILES, SETS, load_problems
from udfs.evaluation.instruct import docstring_task
from udfs.llm import SamplingParams
from udfs.prompts import load_sft_template

_ASSERTED = re.compile(r"assert\s+(?:\w+\()?\s*([A-Za-z_]\w*)\s*\(")


def wrong_responder(prompt: str, params: SamplingParams) -> str:
    if re.search(r"^def\s", prompt, flags=re.MULTILINE):
        return "    return None\n"
    found = _ASSERTED.search(prompt)
    name = found.group(1) if found else "solution"
    return f"def {name}(*args, **kwargs):\n    return None\n"


def empty_responder(prompt: str, params: SamplingParams) -> str:
    return ""


class WrongEngine(FakeEngine):
    responder = staticmethod(wrong_responder)


class EmptyEngine(FakeEngine):
    responder = staticmethod(empty_responder)


@functools.cache
def _references() -> dict[str, str]:
    """What an instruct prompt ends with -> the reference completion it should get."""
    found: dict[str, str] = {}
    for problem in load_problems(SETS, dict(DEFAULT_FILES), BENCHMARKS):
        if problem.style == "complete":
            found["```python\n" + problem.prompt.lstrip("\n")] = problem.reference
        else:
            test = docstring_task(problem.prompt)[1]
            found[f"```python\n{test}\n```"] = problem.reference
    return found


def instruct_reference_responder(prompt: str, params: SamplingParams) -> str:
    solution_head = load_sft_template().prompt("").rstrip("\n").split("\n")[-1]
    task, _, opening = prompt.rpartition(solution_head)
    if not task or not opening.lstrip("\n").startswith("```python\n"):
        return "pass\n"
    for shown, reference in _references().items():
        if opening.lstrip("\n") == shown or (opening.strip() == "```python" and shown in task):
            return reference.lstrip("\n") + "\n```\n\nThat solves it; here is why..."
    return "pass\n"


class InstructReferenceEngine(FakeEngine):
    responder = staticmethod(instruct_reference_responder)
