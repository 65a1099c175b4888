"""The published sanitizing of an SFT pair, as a deterministic step (plain Python).

Before training, the published data was cleaned and varied: comments stripped from the
code, the tests removed unless the instruction asks for tests, the reasoning and the
explanation each dropped with probability 0.5, responses whose code is a placeholder
dropped, and with probability 0.5 one to five of the response's asserts moved into the
instruction ("Your code should pass the following assertion(s)"), which teaches the
MBPP-style prompt. Here every coin is drawn from a generator seeded by the instruction
id and run.seed, so a rerun or a fresh lake makes the same choices, and the choices are
returned for the `sft` row.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Any

from udfs.parse import parse_response, split_sections
from udfs.prompts import seeded_rng

# Also the Java regex select's choice skips such responses with (the same syntax in both).
PLACEHOLDER_PATTERN = r"(?i)\btodo\b|\bfixme\b|your code here|NotImplementedError"
PLACEHOLDER = re.compile(PLACEHOLDER_PATTERN)
ASKS_FOR_TESTS = re.compile(r"\b(unit )?tests?\b|\btest cases?\b|\btesting\b", re.IGNORECASE)


@dataclass(frozen=True)
class SanitizeOptions:
    drop_probability: float = 0.5  # each of reasoning and explanation
    assert_probability: float = 0.5  # asserts moved into the instruction
    max_asserts: int = 5


@dataclass(frozen=True)
class Sanitized:
    instruction: str
    response: str
    choices: dict[str, Any]  # what was done, for the `sft` row
    placeholder: str | None = None  # the placeholder found: the pair is dropped


def strip_comments(code: str) -> str:
    """The code without `#` comments (docstrings stay); lines left empty go too. Code
    that does not tokenize is returned as it is."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    lines = code.splitlines(keepends=True)
    for token in reversed([t for t in tokens if t.type == tokenize.COMMENT]):
        row, col = token.start
        line = lines[row - 1]
        kept = line[:col].rstrip()
        lines[row - 1] = kept + ("\n" if line.endswith("\n") else "") if kept else ""
    return "".join(lines)


def top_level_asserts(tests: str) -> list[str]:
    """The tests' top-level assert statements, as written."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError):
        return []
    found = [ast.get_source_segment(tests, node) for node in tree.body if isinstance(node, ast.Assert)]
    return [text for text in found if text]


def _fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def sanitize(instruction: str, response: str, key: str, seed: int = 0,
             options: SanitizeOptions = SanitizeOptions()) -> Sanitized:
    """The SFT instruction and response after the published sanitizing step."""
    parsed = parse_response(response)
    placeholder = PLACEHOLDER.search(parsed.code)
    if placeholder:
        return Sanitized(instruction, response, {}, placeholder.group(0))
    rng = seeded_rng(f"{seed}:{key}", "sanitize")
    drop_reasoning = rng.random() < options.drop_probability
    drop_explanation = rng.random() < options.drop_probability
    asserts = top_level_asserts(parsed.tests)
    moved = 0
    if asserts and rng.random() < options.assert_probability:
        moved = rng.randint(1, min(options.max_asserts, len(asserts)))
    keep_tests = bool(ASKS_FOR_TESTS.search(instruction))

    bodies = split_sections(response)
    parts = []
    if not drop_reasoning and bodies.get("reasoning", "").strip():
        parts.append(bodies["reasoning"].strip())
    parts.append(_fenced(strip_comments(parsed.code)))
    if not drop_explanation and bodies.get("explanation", "").strip():
        parts.append(bodies["explanation"].strip())
    if keep_tests and parsed.tests.strip():
        parts.append(_fenced(strip_comments(parsed.tests)))
    if moved:
        plural = "s" if moved > 1 else ""
        instruction = (f"{instruction.rstrip()}\n\nYour code should pass the following assertion{plural}:\n"
                       + _fenced("\n".join(asserts[:moved])))
    choices = {"comments_stripped": True, "tests_kept": keep_tests, "reasoning_dropped": drop_reasoning,
               "explanation_dropped": drop_explanation, "asserts_in_instruction": moved}
    return Sanitized(instruction, "\n\n".join(parts), choices)
