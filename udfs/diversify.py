"""Keys of the published global cleaning of SFT pairs, and its first-come rule (plain Python).

Published (starcoder2-self-align, src/star_align/clean_data.py, lines 67-90): all passing
(instruction, response) pairs are shuffled with a fixed seed, then walked in that order;
a pair is kept only when none of its keys was claimed by a pair kept before it, and a
kept pair claims them all. Its keys, in one shared set:

- the instruction with every whitespace character removed (line 67-68, `mk_key`);
- the response likewise;
- the names of every function the response's first code block defines, nested functions
  and methods included, in the order a depth-first visit meets them, joined by spaces
  (lines 20-49); a first block that does not parse drops the pair (lines 80-84), and
  code defining no function has the key "" (so one such pair is kept over all).

Since one instruction's responses share its key, one response per instruction survives.
Keys are stored as sha256 hex digests, so `sft` keeps 3 x 64 characters per pair and a
new night's pairs are checked against every earlier one without reading its text.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

FENCE = "```"
# The key kinds in the order the published rule checks them: the instruction and the
# response first (line 77), the function names after (line 85).
KINDS = ("instruction", "response", "function_names")


def fenced_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, tag) of each fenced block's contents, as the published finder reads
    them (src/star_align/utils.py, lines 150-192): a fence may start anywhere in a line,
    a non-empty rest of its line is the language tag and is skipped, an unclosed block
    ends the search."""
    spans: list[tuple[int, int, str]] = []
    search = 0
    while (opening := text.find(FENCE, search)) != -1:
        tag_start = opening + len(FENCE)
        line_end = text.find("\n", tag_start)
        if line_end == -1:
            line_end = tag_start
        tag = text[tag_start:line_end].strip()
        start = line_end + 1 if tag else tag_start
        end = text.find(FENCE, start)
        if end == -1:
            break
        spans.append((start, end, tag))
        search = end + len(FENCE)
    return spans


def first_code_block(text: str) -> str | None:
    spans = fenced_spans(text)
    return text[spans[0][0]:spans[0][1]].strip() if spans else None


class _Names(ast.NodeVisitor):
    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.names.append(node.name)
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.names.append(node.name)
        self.generic_visit(node)


def function_names_key(response: str) -> str | None:
    """Every function name the first code block defines, in visit order, space-joined;
    None when there is no block or it does not parse (the pair is dropped)."""
    code = first_code_block(response)
    if code is None:
        return None
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    visitor = _Names()
    visitor.visit(tree)
    return " ".join(visitor.names)


def whitespace_free(text: str) -> str:
    return "".join(text.split())


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def pair_keys(instruction: str, response: str) -> list[str] | None:
    """The pair's keys as digests, in KINDS order; None for code that does not parse."""
    names = function_names_key(response)
    if names is None:
        return None
    return [digest(whitespace_free(instruction)), digest(whitespace_free(response)), digest(names)]


@dataclass(frozen=True)
class Claim:
    """What became of one pair in the first-come walk: kept, or the kind of key that an
    earlier kept pair (`by`, its owner's id) had claimed."""

    item: str
    owner: str
    kept: bool
    kind: str | None = None
    by: str | None = None


def first_come(pairs: Iterable[tuple[str, str, list[str]]]) -> Iterator[Claim]:
    """The published walk over (item id, owner id, keys) in their shuffled order: keep a
    pair when no key is claimed; a kept pair claims all of its keys for its owner.
    Memory: the keys of the kept pairs of this walk only (earlier nights' keys are
    removed before it, by a join)."""
    claimed: dict[str, str] = {}
    for item, owner, keys in pairs:
        taken = next((index for index, key in enumerate(keys) if key in claimed), None)
        if taken is None:
            claimed.update(dict.fromkeys(keys, owner))
            yield Claim(item, owner, True)
        else:
            yield Claim(item, owner, False, KINDS[taken], claimed[keys[taken]])
