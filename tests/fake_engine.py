"""The test-double Engine: deterministic fixture completions, no model, no network.

Configured as `llm.engine=python:tests.fake_engine:FakeEngine`, so Spark
executors build it themselves from the EngineSettings (udfs.llm.get_engine).

The default responder guesses which stage asked from the prompt's last section
marker (judge / concepts / instruct / respond) and answers a fixed text of that
kind. Stage tests plug in their own answers in one of two ways:

- in-process (no Spark): `FakeEngine(cfg, responder=my_fn)`;
- on executors: a subclass in an importable test module, named in the config:

      class MyEngine(FakeEngine):
          responder = staticmethod(my_fn)
      # llm.engine=python:tests.stages.test_foo:MyEngine

A responder is `(prompt, params) -> str | list[str]`: one text for all n
samples, or one per sample (cycled when shorter than n). Raising `FakeFailure`
makes that prompt a per-prompt error in the result, as a real engine reports
a prompt that failed after its retries.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from udfs.llm import Completion, EngineSettings, Generation, SamplingParams, params_per_prompt

Responder = Callable[[str, SamplingParams], "str | list[str]"]


class FakeFailure(Exception):
    """Raised by a responder: the prompt fails (transient unless said otherwise)."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


# --- fixture texts, one per kind of request ------------------------------------------

JUDGE_TEXT = "Yes"

CONCEPTS_TEXT = "list comprehension, type hints, string formatting, input validation"

INSTRUCT_TEXT = (
    "Write a Python function `add_numbers(a, b)` that returns the sum of two integers. "
    "Raise a `TypeError` if either argument is not an integer."
)

RESPOND_TEXT = '''[Reasoning]
Check both arguments are integers, then return their sum.

[Implementation]
```python
def add_numbers(a: int, b: int) -> int:
    if not isinstance(a, int) or not isinstance(b, int):
        raise TypeError("a and b must be integers")
    return a + b
```

[Explanation]
The type check rejects floats and strings before adding.

[Tests]
```python
assert add_numbers(1, 2) == 3
assert add_numbers(-1, 1) == 0
try:
    add_numbers(1.5, 2)
except TypeError:
    pass
else:
    raise AssertionError("expected TypeError")
```
'''

GENERIC_TEXT = "fixture completion"

# Words that name the section a prompt ends with; the kind whose word occurs
# last in the prompt is the one being asked for (few-shot examples come before).
MARKERS: dict[str, tuple[str, ...]] = {
    "judge": ("judge", "verdict", "yes or no", "### answer"),
    "concepts": ("concepts",),
    "instruct": ("instruction",),
    "respond": ("response",),
}
TEXTS: dict[str, str] = {
    "judge": JUDGE_TEXT,
    "concepts": CONCEPTS_TEXT,
    "instruct": INSTRUCT_TEXT,
    "respond": RESPOND_TEXT,
}


def prompt_kind(prompt: str) -> str | None:
    """judge | concepts | instruct | respond | None, from the last marker in the prompt."""
    lowered = prompt.lower()
    best: tuple[int, str | None] = (-1, None)
    for kind, words in MARKERS.items():
        position = max(lowered.rfind(word) for word in words)
        if position > best[0]:
            best = (position, kind)
    return best[1]


def fixture_responder(prompt: str, params: SamplingParams) -> str:
    kind = prompt_kind(prompt)
    return TEXTS[kind] if kind is not None else GENERIC_TEXT


class FakeEngine:
    """Engine protocol over a responder; records every prompt it was asked."""

    responder: Responder = staticmethod(fixture_responder)

    def __init__(self, cfg: EngineSettings | None = None, responder: Responder | None = None) -> None:
        self.cfg = cfg
        if responder is not None:
            self.responder = responder
        self.prompts: list[str] = []
        self.calls = 0  # generate() calls: a stage should batch, not call per row
        self._lock = threading.Lock()

    def check(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"engine": "fake", "model": self.cfg.model if self.cfg is not None else "fake"}

    def generate(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        per_prompt = params_per_prompt(prompts, params)
        with self._lock:
            self.calls += 1
            self.prompts.extend(prompts)
        return [self._one(prompt, sp) for prompt, sp in zip(prompts, per_prompt, strict=True)]

    def _one(self, prompt: str, params: SamplingParams) -> Generation:
        try:
            answer = self.responder(prompt, params)
        except FakeFailure as failure:
            return Generation.failed(str(failure), failure.transient)
        texts = [answer] if isinstance(answer, str) else list(answer)
        if not texts:
            return Generation.failed("responder returned no text", transient=False)
        samples = [texts[i % len(texts)] for i in range(params.n)]
        return Generation(completions=tuple(_complete(prompt, t, params) for t in samples))


def _complete(prompt: str, text: str, params: SamplingParams) -> Completion:
    """Honour stop sequences like a server does (cut before the first one), and max_tokens
    (a token is a word here): a longer answer is cut there, with finish reason "length"."""
    finish_reason = "stop"
    cut = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    words = [match.start() for match in re.finditer(r"\S+", text)]
    if len(words) > params.max_tokens:
        text, finish_reason = text[: words[params.max_tokens]], "length"
    return Completion(
        text=text,
        finish_reason=finish_reason,
        prompt_tokens=len(prompt.split()),
        completion_tokens=len(text.split()),
    )
