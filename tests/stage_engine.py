"""A test-double engine for the generation stages, importable by Spark executors.

It answers in the shape each prompt asks for, recognised by how the prompt ends,
with content chosen by markers in the seed code so tests can plant every case:
- concepts name the seed's function, and the instruction repeats the concepts, so every
  seed gets its own instruction (the response is always the same `double`);
- a seed whose code mentions `judged_bad` gets "No"; `judged_weird` gets "Perhaps";
- `no_tests_please` gets responses without their tests section;
- `crash_if_exists=<path>` in an instruction makes the engine raise on its respond
  prompt while that file exists (a hard task failure: a dying worker);
- `flaky_here` fails the respond prompt transiently (an endpoint that keeps timing out);
- `endless_concepts` in a seed, `endless_answer` in an instruction: an answer longer than
  any max_tokens, which the engine cuts (finish reason "length").
"""

from __future__ import annotations

import os
import re

from tests.fake_engine import FakeEngine, FakeFailure
from udfs.llm import SamplingParams

RESPONSE = """Double the input by multiplying it by two.

## Implementation
```python
def double(x):
    return x * 2
```

## Explanation
Multiplication by two doubles any number.

## Tests
```python
assert double(2) == 4
assert double(-3) == -6
```
"""


PLANTED = ("no_tests_please", "flaky_here", "endless_answer")
ENDLESS = " and so on" * 1000


def _last_block(prompt: str) -> str:
    return prompt.rsplit("===", 1)[-1]


def _planted(text: str) -> list[str]:
    """Markers travel seed -> concepts -> instruction -> response prompt."""
    return [marker for marker in PLANTED if marker in text]


def _respond(prompt: str, params: SamplingParams) -> str | list[str]:
    tail = _last_block(prompt.rsplit("=== Response ===", 1)[0])
    crash = re.search(r"crash_if_exists=(\S+)", tail)
    if crash and os.path.exists(crash.group(1)):
        raise RuntimeError("engine crashed (test sentinel)")
    if "flaky_here" in tail:
        raise FakeFailure("timed out after 3 attempts", transient=True)
    if "no_tests_please" in tail:
        return RESPONSE.split("## Tests")[0]
    if "endless_answer" in tail:
        return [RESPONSE + ENDLESS] * params.n
    return [RESPONSE] * params.n


def stage_responder(prompt: str, params: SamplingParams) -> str | list[str]:
    tail = _last_block(prompt)
    if prompt.endswith("Answer:"):
        if "judged_bad" in tail:
            return " No"
        return " Perhaps" if "judged_weird" in tail else " Yes"
    if prompt.endswith("Concepts:"):
        # The seed's own name makes each seed's concepts, and so its instruction, distinct.
        if "endless_concepts" in tail:
            return "arithmetic" + ENDLESS
        return ", ".join(["arithmetic", "function definition", *re.findall(r"def (\w+)", tail)[:1],
                          *_planted(tail)])
    if prompt.endswith("Task:\n"):
        extra = " ".join(_planted(tail))
        concepts = re.findall(r"^Concepts: (.*)$", tail, flags=re.MULTILINE)
        about = f" (concepts: {concepts[-1]})" if concepts else ""
        return f"Write a function `double(x)` that returns twice its argument, for any number{about}. {extra}"
    if prompt.rstrip().endswith("## Reasoning"):
        return _respond(prompt, params)
    return "unrecognised prompt"


class StageEngine(FakeEngine):
    responder = staticmethod(stage_responder)
