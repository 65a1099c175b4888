"""Read back what the base model wrote at each generation step.

Plain functions on strings, so they are unit-tested without Spark or a model.
A base model does not always stop where asked (an OpenAI-compatible server may
ignore stop sequences, a sample may run into the next few-shot example, a long
answer may be cut by max_tokens), so every parser tolerates leaked text and an
unclosed code fence, and says what is missing instead of guessing.

The layout constants live here rather than in udfs.prompts because the parsers
depend on them; udfs.prompts imports them to build prompts that match.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from typing import Literal

from schemas.outcome import Reason, reject

# Lines starting with this begin the next few-shot block ("=== Example 9 ===",
# "=== Task ==="); anything from such a line on is leaked continuation.
SEPARATOR = "==="

# The four sections of a response, in order, and their markdown headings.
SECTIONS: tuple[str, ...] = ("reasoning", "implementation", "explanation", "tests")
MARKERS: dict[str, str] = {
    "reasoning": "## Reasoning",
    "implementation": "## Implementation",
    "explanation": "## Explanation",
    "tests": "## Tests",
}
# The respond prompt ends on this line, so a completion starts inside the reasoning.
RESPONSE_OPENING = MARKERS["reasoning"] + "\n"

# In `missing` when a tests block holds nothing that can fail (reject `no_tests`).
ASSERTIONS = "assertions"

# A task shorter than this cannot state inputs, outputs and edge cases.
MIN_INSTRUCTION_CHARS = 20

# Headings are matched leniently (2-3 hashes, any case, optional colon, "Test")
# because sampled text drifts; a heading must still be a whole line of its own.
_HEADER = re.compile(
    r"^[ \t]*#{2,3}[ \t]*(reasoning|implementation|explanation|tests?)[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_SEPARATOR_LINE = re.compile(rf"^[ \t]*{re.escape(SEPARATOR)}", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*```")
_WORD = re.compile(r"[a-z]+")
_EITHER_ANSWER = re.compile(r"^\W*(yes|no)\s*(?:/|\||\bor\b)\s*(yes|no)\b")
_BULLET = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s+")


@dataclass(frozen=True)
class ParsedResponse:
    reasoning: str
    code: str
    explanation: str
    tests: str
    # Names of the parts above that are absent or empty, in that order.
    missing: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return not {"code", "tests", ASSERTIONS} & set(self.missing)


# --- small helpers --------------------------------------------------------------

def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def cut_at_separator(text: str, start: int = 0) -> str:
    """Text up to the first separator line at or after `start` (leaked next example)."""
    hit = _SEPARATOR_LINE.search(text, start)
    return text[: hit.start()] if hit else text


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


# --- judge ----------------------------------------------------------------------

# How a judge answer is read: generation.judge.decision.
JudgeDecision = Literal["first_word", "count"]


def parse_judge(text: str | None, decision: JudgeDecision = "first_word") -> bool | None:
    """Yes -> True, No -> False, anything else -> None (recorded as unparseable).

    Only the first non-blank line counts, and only its first word, so "Yes.",
    " no", "**YES**" and "Yes, it explains the arguments" all parse. An echoed
    "Answer:" label is skipped. "Yes/No" or "yes or no" is a refusal to choose.

    decision "count", the published rule (seed_gathering/filter_dataset.py:354-364):
    True when "yes" occurs more often than "no" in the lower-cased text, as substrings,
    else False (never None): " Yes, I know" is No ("know" holds "no"), a tie is No.
    """
    if decision == "count":
        lowered = (text or "").lower()
        return lowered.count("yes") > lowered.count("no")
    line = _first_line(text or "").lower()
    words = _WORD.findall(line)
    if words[:1] == ["answer"]:
        words = words[1:]
        line = line.split("answer", 1)[1]
    if not words or words[0] not in ("yes", "no"):
        return None
    either = _EITHER_ANSWER.match(line)
    if either and either.group(1) != either.group(2):
        return None
    return words[0] == "yes"


# --- concepts -------------------------------------------------------------------

def _clean_concept(item: str) -> str:
    item = _BULLET.sub("", item.strip())
    return " ".join(item.strip(" .;").split())


def parse_concepts(text: str | None) -> list[str]:
    """Comma- (or line-) separated concepts: trimmed, de-duplicated case-insensitively.

    Reading stops at the first blank line or separator, where a model that was not
    stopped starts the next example.
    """
    body = cut_at_separator(_normalize_newlines(text or "")).split("\n\n", 1)[0]
    body = re.sub(r"^\s*concepts\s*:", "", body, flags=re.IGNORECASE)
    seen: set[str] = set()
    concepts: list[str] = []
    for raw in re.split(r"[,\n]", body):
        concept = _clean_concept(raw)
        if concept and concept.lower() not in seen:
            seen.add(concept.lower())
            concepts.append(concept)
    return concepts


# --- instruction ----------------------------------------------------------------

def parse_instruction(text: str | None) -> str | None:
    """The task text, or None when nothing usable came back."""
    body = cut_at_separator(_normalize_newlines(text or "")).strip()
    body = re.sub(r"^task\s*:\s*", "", body, flags=re.IGNORECASE)
    return body if len(body) >= MIN_INSTRUCTION_CHARS else None


# --- response -------------------------------------------------------------------

def _section_name(match: re.Match[str]) -> str:
    name = match.group(1).lower()
    return "tests" if name == "test" else name


def _headings(text: str) -> tuple[str, list[re.Match[str]]]:
    """The text up to a leaked next example, and its section headings."""
    text = _normalize_newlines(text)
    headers = list(_HEADER.finditer(text))
    # Separators before the first heading are chatter; after it they are a leak.
    text = cut_at_separator(text, headers[0].start() if headers else 0)
    return text, [h for h in headers if h.end() <= len(text)]


def section_order(text: str) -> list[str]:
    """The sections a response's headings open, in order, repeats included; text before
    the first heading counts as the reasoning, as in split_sections."""
    text, headers = _headings(text)
    names = [_section_name(h) for h in headers]
    lead = text[: headers[0].start()] if headers else text
    if "reasoning" not in names and lead.strip():
        names.insert(0, "reasoning")
    return names


def split_sections(text: str) -> dict[str, str]:
    """Body of each section present, keyed by section name, in the text's order.

    The first non-empty occurrence of a section wins; any heading ends the section
    before it. Without a reasoning heading, the text before the first heading is
    the reasoning: the respond prompt ends on "## Reasoning", so a raw completion
    starts there. With one, text before it is chatter and is dropped.
    """
    text, headers = _headings(text)
    bodies: dict[str, str] = {}
    if "reasoning" not in {_section_name(h) for h in headers}:
        lead = text[: headers[0].start()] if headers else text
        if lead.strip():
            bodies["reasoning"] = lead.strip()
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        name, body = _section_name(header), text[header.end() : end].strip()
        if body and name not in bodies:
            bodies[name] = body
    return bodies


def _fenced_blocks(body: str) -> list[str]:
    """Contents of the ``` blocks in a section; an unclosed last block runs to the end."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in body.split("\n"):
        if _FENCE.match(line):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    if current is not None:  # cut off by max_tokens or a missing final fence
        blocks.append(current)
    texts = (textwrap.dedent("\n".join(lines)).strip("\n").rstrip() for lines in blocks)
    return [text for text in texts if text.strip()]


def _code_of(body: str) -> str:
    return "\n\n".join(_fenced_blocks(body))


def parse_response(text: str | None) -> ParsedResponse:
    """Split a response into its parts; `missing` names the absent ones.

    Code and tests are the contents of the fenced blocks in their sections (all
    blocks, joined), so prose around a block never reaches the sandbox.
    """
    bodies = split_sections(text or "")
    parts = {
        "reasoning": bodies.get("reasoning", ""),
        "code": _code_of(bodies.get("implementation", "")),
        "explanation": bodies.get("explanation", ""),
        "tests": _code_of(bodies.get("tests", "")),
    }
    missing = [name for name, value in parts.items() if not value.strip()]
    if "tests" not in missing and not checks_anything(parts["tests"]):
        missing.append(ASSERTIONS)
    return ParsedResponse(**parts, missing=missing)


def _checks(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.ClassDef):
        return any((getattr(base, "attr", None) or getattr(base, "id", "")).endswith("TestCase")
                   for base in node.bases)
    if isinstance(node, ast.Call):
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", "")
        return name.startswith("assert") or name == "raises"
    return False


def unrunnable_reason(parsed: ParsedResponse) -> dict[str, str | None]:
    """The reject of a response the sandbox will not run: `no_tests` when its tests block
    cannot fail, `response_missing_parts` when code or tests are absent."""
    absent = [name for name in parsed.missing if name in ("code", "tests")]
    if absent:
        return reject(Reason.RESPONSE_MISSING_PARTS, "missing " + ", ".join(absent))
    return reject(Reason.NO_TESTS, "the tests hold no assert, no TestCase and no assert*() call")


def checks_anything(tests: str) -> bool:
    """Whether a tests block can fail: an assert, a unittest TestCase, or an assert*/raises
    call. A block that only prints passes whatever the code does, so it is no test.
    Text that does not parse counts as checking: the sandbox then judges it (a fail)."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return any(_checks(node) for node in ast.walk(tree))


def defined_function_names(code: str | None) -> str:
    """The top-level functions a response's code defines, sorted and comma-joined ("" for
    none, or for code that does not parse): the key of function-name diversification."""
    try:
        tree = ast.parse(code or "")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    return ",".join(sorted(names))


def _close_fences(body: str) -> str:
    fences = sum(1 for line in body.split("\n") if _FENCE.match(line))
    return body + "\n```" if fences % 2 else body


def clean_response(text: str | None) -> str:
    """The response as SFT text: sections in order, headings dropped, fences closed.

    Prose and code blocks inside each section are kept as written; chatter before
    the reasoning heading and a leaked next example are not.
    """
    bodies = split_sections(text or "")
    return "\n\n".join(_close_fences(bodies[name]) for name in SECTIONS if name in bodies)


def program_for(parsed: ParsedResponse) -> str:
    """What the sandbox runs: the implementation, then the tests that call it."""
    if not parsed.runnable:
        # A tests block alone can pass without any implementation: never run it.
        raise ValueError(f"response has no runnable program (missing: {', '.join(parsed.missing)})")
    return parsed.code + "\n\n" + parsed.tests


def first_line_after(code: str) -> int:
    """The first line of a program that starts with `code`, after `code`'s own lines:
    where its tests begin (the sandbox's tests_from_line)."""
    return code.count("\n") + 2
