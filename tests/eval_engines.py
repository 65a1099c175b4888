"""Test-double engines for `selfalign evaluate`, importable by Spark executors.

- WrongEngine answers every prompt with code that runs but returns None: a HumanEval
  prompt gets the body `return None`, an MBPP prompt a function of the name its assert
  calls. Every task must then score 0 (none of the first tasks expects None).
- EmptyEngine answers the empty string.
"""

from __future__ import annotations

import re

from tests.fake_engine import FakeEngine
from udfs.llm import SamplingParams

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
