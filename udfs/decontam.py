"""Find seeds that leak benchmark solutions, prompts or docstrings.

Two rules, cheapest evidence first:

- substring: a normalized benchmark solution, prompt or docstring (at least
  `min_substring_chars` long) appears inside the normalized seed. Normalizing
  removes comments and collapses whitespace, so re-indented or CRLF/tab copies
  (MBPP's reference code has both) still match; docstrings are kept.
- ngram: the seed shares at least `min_ngram_hits` distinct token n-grams with
  one benchmark task. Tokens ignore spacing and quote style, so a copy that was
  reformatted (`m+1` -> `m + 1`) or whose function alone was renamed is still
  caught. Consistently renaming every identifier is not: this finds leaks, not
  clones.

False positives come from idioms (`for i in range(len(arr)):`, literal lists in
docstring examples) that benchmark texts share with ordinary code. Three guards,
tuned on stdlib and site-packages functions: an n-gram is indexed only if it
holds a non-generic name (`min_distinctive_tokens`) and occurs in at most
`max_ngram_tasks` tasks, and a seed needs `min_ngram_hits` distinct n-grams of
one task.

The index is plain data (ints, strs, lists, dicts) so Spark can broadcast it;
`find_contamination` is the per-row function the Spark wrapper calls. Its
settings come in as `DecontamSettings`, a plain value the driver builds from its
config (`DecontamSettings.from_settings(cfg.decontaminate)`).
"""

from __future__ import annotations

import builtins
import hashlib
import io
import keyword
import pickle
import re
import tokenize
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from udfs.benchmarks import BenchmarkItem, BenchmarkSpec, load_benchmarks

# Kinds whose text a leaked seed would contain; tests are code a seed never holds.
INDEXED_KINDS = frozenset({"solution", "prompt", "docstring", "body"})
CODE_KINDS = frozenset({"solution", "prompt", "body"})
# A canonical body is matched by substring whatever its length, so a body such as
# `return len(string)` under another name and docstring is contamination. Stricter than
# published: the published rule also matched canonical solutions by plain substring with
# no floor, but exempted `return x + y`, `return len(string)` and `return n**2`
# (benchmark_data.py:11-13; its fourth entry, `'return ''.join(strings)'`, is two adjacent
# literals and exempts nothing). `decontaminate.exempt_bodies` restores that list.
# Measured on the 2,232 functions of the sample corpus: no floor flags one more of them
# (a gcd by Euclid's loop, HumanEval/13's very solution), and catches the 35 of 164
# HumanEval+ bodies planted under another name that the 40-character floor let through.
# MBPP solutions are whole functions: they keep the floor, as other texts do.
UNBOUNDED_KINDS = frozenset({"body"})
MATCHED_TEXT_CHARS = 300

_WHITESPACE = re.compile(r"\s+")
# A string literal is matched only so that a `#` inside it is not taken for a comment.
_STRING_OR_COMMENT = re.compile(
    r"""(?P<string>[rRbBuUfF]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''"""
    r"""|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))"""
    r"|(?P<comment>#[^\n]*)"
)
# Single-character punctuation keeps tokens independent of spacing (`a[i-1]` == `a[i - 1]`);
# quotes are dropped so 'x' and "x" tokenize alike.
_TOKEN = re.compile(r"\w+|[^\w\s'\"]")
_NAME = re.compile(r"[^\W\d]\w+")
# Names every program uses (keywords, builtins, typing's annotations): an n-gram made only
# of them, one-letter names, numbers and punctuation says nothing about its task.
GENERIC_NAMES = frozenset(
    [*keyword.kwlist, *keyword.softkwlist, *dir(builtins), *typing.__all__,
     "self", "cls", "args", "kwargs"]
)


# --- normalization ----------------------------------------------------------------

def strip_comments_tokenize(text: str) -> str:
    """Comments removed by the tokenizer; raises on text it cannot tokenize."""
    lines = text.split("\n")
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join(lines)


def strip_comments_regex(text: str) -> str:
    """Comments removed by a scanner that knows string literals; never raises."""
    return _STRING_OR_COMMENT.sub(lambda m: m.group("string") or "", text)


def strip_comments(text: str) -> str:
    """Remove `#` comments, keeping `#` inside strings and docstrings.

    The regex scanner, not the tokenizer: on 3.11 `tokenize` is pure Python and
    nearly halved whole-seed throughput (about 2k vs 3.5k seeds/s per core on
    stdlib functions), while the two agree on every commented stdlib function
    tests/unit/test_decontam.py tries (`strip_comments_tokenize` is kept for that check).
    """
    return strip_comments_regex(text) if "#" in text else text


def normalize(code: str, comments: bool = True) -> str:
    """Comment-free code with every whitespace run (CRLF, tabs, indents) as one space.

    `comments=False` is for prose (docstrings, task texts), where `#` is just a character.
    """
    text = code.replace("\r\n", "\n").replace("\r", "\n")
    if comments:
        text = strip_comments(text)
    return _WHITESPACE.sub(" ", text.replace("\t", " ")).strip()


def tokens_of_normalized(text: str) -> list[str]:
    return _TOKEN.findall(text)


def tokens(code: str) -> list[str]:
    """Names, keywords, numbers, punctuation and the words inside strings, quotes dropped."""
    return tokens_of_normalized(normalize(code))


# --- n-gram hashing ---------------------------------------------------------------

_MASK = (1 << 64) - 1
# An odd 64-bit multiplier: over random-looking token hashes, windows rarely collide.
_BASE = 0x9E3779B97F4A7C15
_TOKEN_HASHES: dict[str, int] = {}
_TOKEN_CACHE_LIMIT = 1 << 20


def token_hash(token: str) -> int:
    # blake2b, not hash(): str hashes differ per process and the index is built on the driver.
    value = _TOKEN_HASHES.get(token)
    if value is None:
        if len(_TOKEN_HASHES) >= _TOKEN_CACHE_LIMIT:
            _TOKEN_HASHES.clear()
        digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        value = _TOKEN_HASHES[token] = int.from_bytes(digest, "little")
    return value


def ngram_hash(window: Sequence[str]) -> int:
    """64-bit hash of one n-gram; equal to the matching entry of `ngram_hashes`."""
    value = 0
    for token in window:
        value = (value * _BASE + token_hash(token)) & _MASK
    return value


def ngram_hashes(toks: Sequence[str], n: int) -> list[int]:
    """Hash of every n-token window, in order (may repeat).

    A polynomial hash evaluated with numpy, whose uint64 arithmetic wraps like the
    `& _MASK` in `ngram_hash`: hashing each window's text was most of a seed's cost.
    """
    if len(toks) < n:
        return []
    cached = _TOKEN_HASHES.get
    values = np.array([cached(t) or token_hash(t) for t in toks], dtype=np.uint64)
    count = len(toks) - n + 1
    acc = values[:count].copy()
    base = np.uint64(_BASE)
    for k in range(1, n):
        acc *= base
        acc += values[k:k + count]
    return acc.tolist()


def distinctive_count(window: Sequence[str]) -> int:
    """Distinct names in a window that are neither generic nor one letter long."""
    return len({t for t in window if t not in GENERIC_NAMES and _NAME.fullmatch(t)})


# --- the index --------------------------------------------------------------------

@dataclass(frozen=True)
class DecontamSettings:
    """Which benchmark files to index and the rule thresholds (see the module docstring).

    Built from the config (benchmarks.dir and .files, decontaminate.exempt_bodies); the
    thresholds are constants, no config keys (`build_index` has the same defaults for
    callers that index items directly). The n-gram rule's false-positive guards (tuned
    on stdlib + site-packages functions): distinct n-grams one task must share with a
    seed, how many tasks an n-gram may occur in and stay indexed, and the non-generic
    names (not keywords/builtins) it must hold.
    """

    benchmarks_dir: str
    benchmarks: tuple[BenchmarkSpec, ...]
    exempt_bodies: tuple[str, ...]
    ngram_tokens: int = 10
    min_substring_chars: int = 40
    min_ngram_hits: int = 3
    max_ngram_tasks: int = 1
    min_distinctive_tokens: int = 1

    @classmethod
    def from_settings(cls, settings: object) -> DecontamSettings:
        """From any object with these attribute names (the thresholds: where it has them),
        e.g. jobs.core.config.DecontaminateConfig."""
        values = {item.name: getattr(settings, item.name) for item in fields(cls)
                  if hasattr(settings, item.name)}
        values["benchmarks"] = tuple(BenchmarkSpec.from_settings(spec) for spec in values["benchmarks"])
        values["exempt_bodies"] = tuple(values["exempt_bodies"])
        return cls(**values)


@dataclass
class BenchmarkIndex:
    """Broadcastable benchmark index: every field is a plain int, str, list or dict."""

    ngram_tokens: int
    min_substring_chars: int
    min_ngram_hits: int
    # (benchmark, task_id) of every indexed task; other fields refer to tasks by position.
    tasks: list[tuple[str, str]] = field(default_factory=list)
    # n-gram hash -> task position, for informative n-grams specific to one task.
    ngrams: dict[int, int] = field(default_factory=dict)
    # Normalized texts for the substring rule, with their task positions.
    texts: list[str] = field(default_factory=list)
    text_tasks: list[int] = field(default_factory=list)
    # First n-gram of a text -> text positions: a seed can only contain a text whose
    # first n-gram it has, so only those few texts are searched.
    text_heads: dict[int, list[int]] = field(default_factory=dict)
    # Texts shorter than one n-gram (a couple dozen): searched in every seed.
    short_texts: list[int] = field(default_factory=list)

    def size_bytes(self) -> int:
        """Pickled size, about what a Spark broadcast ships to each executor."""
        return len(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))


@dataclass(frozen=True)
class Match:
    benchmark: str
    task_id: str
    rule: str  # "substring" | "ngram"
    matched_text: str


def _normalized_item(item: BenchmarkItem) -> str:
    return normalize(item.text, comments=item.kind in CODE_KINDS)


def _ngram_owners(
    tokenized: Iterable[tuple[BenchmarkItem, list[str]]], n: int, min_distinctive: int
) -> tuple[dict[int, set[str]], dict[int, BenchmarkItem]]:
    """Each informative n-gram's task ids, and the first item that holds it.

    Tasks are counted by task_id, so HumanEval/HumanEval+ (and MBPP/MBPP+, whose
    ids are both "Mbpp/N") count a shared n-gram once.
    """
    owners: dict[int, set[str]] = {}
    first: dict[int, BenchmarkItem] = {}
    for item, toks in tokenized:
        for start, value in enumerate(ngram_hashes(toks, n)):
            if value not in owners:
                if distinctive_count(toks[start:start + n]) < min_distinctive:
                    continue
                owners[value] = set()
                first[value] = item
            owners[value].add(item.task_id)
    return owners, first


class _TaskTable:
    def __init__(self, tasks: list[tuple[str, str]]) -> None:
        self.tasks = tasks
        self.positions: dict[tuple[str, str], int] = {}

    def position(self, item: BenchmarkItem) -> int:
        key = (item.benchmark, item.task_id)
        if key not in self.positions:
            self.positions[key] = len(self.tasks)
            self.tasks.append(key)
        return self.positions[key]


def _add_texts(
    index: BenchmarkIndex, normalized: list[tuple[BenchmarkItem, str, list[str]]], table: _TaskTable
) -> None:
    seen: set[str] = set()
    for item, text, toks in normalized:
        floor = 1 if item.kind in UNBOUNDED_KINDS else index.min_substring_chars
        if len(text) < floor or text in seen:
            continue
        seen.add(text)
        position = len(index.texts)
        index.texts.append(text)
        index.text_tasks.append(table.position(item))
        if len(toks) >= index.ngram_tokens:
            head = ngram_hash(toks[: index.ngram_tokens])
            index.text_heads.setdefault(head, []).append(position)
        else:
            index.short_texts.append(position)


def build_index(
    items: Iterable[BenchmarkItem],
    ngram_tokens: int = 10,
    min_substring_chars: int = 40,
    min_ngram_hits: int = 3,
    max_ngram_tasks: int = 1,
    min_distinctive_tokens: int = 1,
    exempt_bodies: Iterable[str] = (),
) -> BenchmarkIndex:
    """Index benchmark solutions, prompts and docstrings for `find_contamination`.
    A canonical body equal to one of `exempt_bodies` (both normalized) is not indexed
    at all, as the published list exempted a few short ones."""
    index = BenchmarkIndex(ngram_tokens, min_substring_chars, min_ngram_hits)
    table = _TaskTable(index.tasks)
    exempt = frozenset(normalize(body) for body in exempt_bodies)
    normalized = []
    for item in items:
        if item.kind in INDEXED_KINDS:
            text = _normalized_item(item)
            if item.kind == "body" and text in exempt:
                continue
            normalized.append((item, text, tokens_of_normalized(text)))
    owners, first = _ngram_owners(
        ((item, toks) for item, _, toks in normalized), ngram_tokens, min_distinctive_tokens
    )
    for value, task_ids in owners.items():
        if len(task_ids) <= max_ngram_tasks:
            index.ngrams[value] = table.position(first[value])
    _add_texts(index, normalized, table)
    return index


def build_index_from_config(settings: DecontamSettings) -> BenchmarkIndex:
    """Load the configured benchmark files and index them (driver side, once per run)."""
    return build_index(
        load_benchmarks(settings.benchmarks, settings.benchmarks_dir),
        ngram_tokens=settings.ngram_tokens,
        min_substring_chars=settings.min_substring_chars,
        min_ngram_hits=settings.min_ngram_hits,
        max_ngram_tasks=settings.max_ngram_tasks,
        min_distinctive_tokens=settings.min_distinctive_tokens,
        exempt_bodies=settings.exempt_bodies,
    )


# --- matching -----------------------------------------------------------------------

def _truncate(text: str) -> str:
    return text if len(text) <= MATCHED_TEXT_CHARS else text[: MATCHED_TEXT_CHARS - 3] + "..."


def _substring_match(text: str, hashes: Iterable[int], index: BenchmarkIndex) -> Match | None:
    heads = index.text_heads
    candidates: set[int] = set(index.short_texts)
    for value in hashes:
        found = heads.get(value)
        if found:
            candidates.update(found)
    for position in sorted(candidates):
        if index.texts[position] in text:
            benchmark, task_id = index.tasks[index.text_tasks[position]]
            return Match(benchmark, task_id, "substring", _truncate(index.texts[position]))
    return None


def _ngram_match(toks: list[str], hashes: list[int], index: BenchmarkIndex) -> Match | None:
    ngrams = index.ngrams
    hits: dict[int, set[int]] = {}
    first_at: dict[int, int] = {}
    for start, value in enumerate(hashes):
        task = ngrams.get(value)
        if task is not None:
            hits.setdefault(task, set()).add(value)
            first_at.setdefault(task, start)
    if not hits:
        return None
    # Most shared n-grams wins; ties go to the task indexed first (config order).
    best = max(hits, key=lambda task: (len(hits[task]), -task))
    if len(hits[best]) < index.min_ngram_hits:
        return None
    benchmark, task_id = index.tasks[best]
    start = first_at[best]
    return Match(benchmark, task_id, "ngram", _truncate(" ".join(toks[start:start + index.ngram_tokens])))


def find_contamination(code: str | None, index: BenchmarkIndex) -> Match | None:
    """The benchmark task a seed leaks, or None when it looks clean."""
    if not code:
        return None
    text = normalize(code)
    toks = tokens_of_normalized(text)
    hashes = ngram_hashes(toks, index.ngram_tokens)
    return _substring_match(text, hashes, index) or _ngram_match(toks, hashes, index)
