"""The sanitizing of an SFT pair, as a deterministic step (plain Python): selfalign's
(`sanitize`) and the published one rule for rule (`sanitize_published`).

Before training, the published data was cleaned and varied: comments stripped from the
code, the tests removed unless the instruction asks for tests, the reasoning and the
explanation each dropped with probability 0.5, responses whose code is a placeholder
dropped, and with probability 0.5 one to five of the response's asserts moved into the
instruction ("Your code should pass the following assertion(s)"), which teaches the
MBPP-style prompt. Here every coin is drawn from a generator seeded by the instruction
id and run.seed, so a rerun or a fresh lake makes the same choices, and the choices are
returned for the `sft` row.

The two styles differ where selfalign chose otherwise (select.sanitize.style):

- placeholders: selfalign looks in the code only, and select then chooses another passing
  response; published, one anywhere in the response drops the pair after deduplication;
- asserts: selfalign moves 1-k of the tests' top-level assert statements; published, only
  a tests block made of `assert` lines gives a random 1-5 of them, another block goes
  whole when it has at most 5 lines, and never into an instruction that holds "assert",
  "for example" or "test";
- tests: selfalign keeps them when the instruction asks for tests (whole words);
  published, when "test" occurs anywhere in it (so "latest" and "contest" too);
- comments: selfalign strips every comment of the code and tests, inline ones too;
  published, only whole comment lines (and a blank line before one), in every block;
- text: selfalign rebuilds the code and tests as fenced blocks; published keeps each
  section as written (prose around the code included) and drops responses that are not
  in its layout before deduplication (`published_layout`).
"""

from __future__ import annotations

import ast
import io
import random
import re
import tokenize
from dataclasses import dataclass
from typing import Any

from udfs.diversify import fenced_spans
from udfs.parse import SECTIONS, parse_response, section_order, split_sections
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
    style: str = "selfalign"  # or "published"


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
    """The SFT instruction and response after the sanitizing step of options.style."""
    if options.style == "published":
        return sanitize_published(instruction, response, key, seed, options)
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


# --- the published style ---------------------------------------------------------------
# starcoder2-self-align, src/star_align/sanitize_data.py, run twice as its README gives it:
# RAW=1 before clean_data (the layout check, lines 61-118) and SMART=1 after it (the
# choices, lines 120-187). Its coins come from one random stream over the file; here
# from the pair's own generator, so a pair's choices do not depend on its neighbours.

# Lower-cased substrings of a response that mark it unfinished (lines 30-37, 138-142).
INCOMPLETE = ("todo", "fixme", "write your code here", "your code here", "your code goes here",
              "notimplemented")


@dataclass(frozen=True)
class Layout:
    """A response's four sections as written; tests end with their one code block."""

    sections: dict[str, str]
    tests_block: str

    def text(self, names: tuple[str, ...] = SECTIONS) -> str:
        return "\n\n".join(self.sections[name] for name in names)


def _python_blocks(text: str) -> list[str]:
    return [text[start:end].strip() for start, end, tag in fenced_spans(text) if tag.lower() == "python"]


def published_layout(response: str) -> Layout | str:
    """The response's sections as the published layout check reads them, or why it fails:
    each section once and in order, a python block in the implementation, exactly one
    fenced python block in the tests, cut after it and at a line starting with "/", and
    tests that assert something beyond definitions and imports."""
    if section_order(response) != list(SECTIONS):
        return "not the four sections, once each, in order"
    sections = split_sections(response)
    if not _python_blocks(sections["implementation"]):
        return "no python code block in the implementation"
    tests = sections["tests"]
    blocks = _python_blocks(tests)
    if len(blocks) != 1 or tests.count("```") != 2:
        return "the tests are not exactly one python code block"
    tests = tests[: tests.rindex("```") + 3]
    lines = tests.splitlines(keepends=True)
    cut = next((index for index, line in enumerate(lines) if line.startswith("/")), None)
    if cut is not None:
        tests = "".join(lines[:cut]).strip()
    definitions = ("def", "class", "import", "from")
    if "assert" not in tests or all(line.startswith(definitions) for line in blocks[0].splitlines()
                                    if line and line[0].isalpha()):
        return "the tests assert nothing"
    return Layout({**sections, "tests": tests}, blocks[0])


def remove_comment_lines(text: str) -> str:
    """Whole comment lines out of every fenced block, and a blank line that precedes one
    (not at a block's start); inline comments stay (src/star_align/utils.py, 195-242)."""
    out: list[str] = []
    done = 0
    for start, end, _ in fenced_spans(text):
        out.append(text[done:start])
        lines = text[start:end].splitlines(keepends=True)
        index = 0
        while index < len(lines):
            if (index and index + 1 < len(lines) and not lines[index].strip()
                    and lines[index + 1].lstrip().startswith("#")):
                index += 2
            elif lines[index].lstrip().startswith("#"):
                index += 1
            else:
                out.append(lines[index])
                index += 1
        done = end
    out.append(text[done:])
    return "".join(out)


def _assertion(tests_block: str, rng: random.Random, max_asserts: int) -> tuple[str, str]:
    """What may move into the instruction, and what to call it."""
    lines = tests_block.splitlines()
    if all(line.startswith("assert") for line in lines):
        picked = rng.sample(lines, k=min(rng.choice(range(1, max_asserts + 1)), len(lines)))
        return "\n".join(picked), "assertion" + ("s" if len(picked) > 1 else "")
    return tests_block, "test case"


def sanitize_published(instruction: str, response: str, key: str, seed: int = 0,
                       options: SanitizeOptions = SanitizeOptions()) -> Sanitized:
    """The published SMART=1 pass over a pair in the published layout; `placeholder` set
    (the pair dropped) for a response that is unfinished or not in the layout."""
    layout = published_layout(response)
    if isinstance(layout, str):
        return Sanitized(instruction, response, {}, f"not in the published layout: {layout}")
    lowered = layout.text().lower()
    found = next((marker for marker in INCOMPLETE if marker in lowered), None)
    if found:
        return Sanitized(instruction, response, {}, found)
    rng = seeded_rng(f"{seed}:{key}", "sanitize")
    keep_tests = "test" in instruction.lower()
    drop_explanation = rng.random() < options.drop_probability
    drop_reasoning = rng.random() < options.drop_probability
    dropped = {"tests": not keep_tests, "explanation": drop_explanation, "reasoning": drop_reasoning}
    text = layout.text(tuple(name for name in SECTIONS if not dropped.get(name)))

    assertion, term = _assertion(layout.tests_block, rng, options.max_asserts)
    moved = 0
    if ("assert" in assertion and len(assertion.splitlines()) <= 5
            and rng.random() < options.assert_probability
            and "assert" not in instruction and "for example" not in instruction.lower()
            and "test" not in instruction.lower()):
        instruction = (f"{instruction}\n\nYour code should pass the following {term}:\n```python\n"
                       f"{assertion.strip()}\n```")
        moved = len(assertion.strip().splitlines())
    choices = {"comments_stripped": "whole lines", "tests_kept": keep_tests, "reasoning_dropped": drop_reasoning,
               "explanation_dropped": drop_explanation, "asserts_in_instruction": moved, "style": "published"}
    return Sanitized(instruction, remove_comment_lines(text), choices)
