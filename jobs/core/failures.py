"""One readable line for a stage that failed inside Spark.

A failed Spark job surfaces as a Py4J error or a captured Spark exception whose text
is a Java stack trace hundreds of lines long. The operator needs the root cause (a
full disk, an unreadable file) and what to do about it; the full trace still goes to
the `runs` table and the log at debug level.
"""

from __future__ import annotations

import re
from typing import Any


class StageError(RuntimeError):
    """A stage cannot run; the message tells the operator what to do."""


# Substrings of a root cause, and what to tell the operator about them.
HINTS: tuple[tuple[str, str], ...] = (
    ("No space left on device", "free space where lake.root lives, then rerun: committed work is kept"),
    ("Disk quota exceeded", "free space where lake.root lives, then rerun: committed work is kept"),
    ("is not a Parquet file", "the input file is corrupt: replace or remove it, then rerun"),
    ("FAILED_READ_FILE", "an input file cannot be read: replace or remove it, then rerun"),
    ("Permission denied", "the job cannot write or read a path it needs: check permissions"),
)


def _java_root(java_exc: Any) -> str | None:
    """`toString()` of the innermost cause of a Java throwable, through Py4J."""
    try:
        current, seen = java_exc, 0
        while current.getCause() is not None and seen < 50:
            current, seen = current.getCause(), seen + 1
        return str(current.toString())
    except Exception:  # the gateway may already be gone: fall back to the Python text
        return None


def root_cause(exc: BaseException) -> str:
    """The most specific message the exception carries, on one line."""
    origin = getattr(exc, "_origin", None) or getattr(exc, "java_exception", None)
    text = _java_root(origin) if origin is not None else None
    if not text:
        inner: BaseException = exc
        while inner.__cause__ is not None:
            inner = inner.__cause__
        text = f"{type(inner).__name__}: {inner}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def hint_for(text: str) -> str | None:
    """What to do about a failure whose text contains a known marker."""
    return next((advice for marker, advice in HINTS if marker in text), None)


# A commit file of a Delta table, as Spark's and Hadoop's messages and traces name it.
_COMMIT_FILE = re.compile(r"(?P<table>[A-Za-z][\w+.-]*:/[^\s'\"\[\]()]*?|/[^\s'\"\[\]()]*?)"
                          r"/_delta_log/(?P<commit>\d{20})\.json")
# What reading a cut-short or garbled commit file fails with.
_UNREADABLE_COMMIT = ("ChecksumException", "JsonEOFException", "JsonParseException",
                      "MismatchedInputException", "Unexpected end-of-input")


def damaged_commit(text: str) -> tuple[str, str] | None:
    """(table path, commit file name) when `text` is a failure to read a Delta commit."""
    if not any(marker in text for marker in _UNREADABLE_COMMIT):
        return None
    found = _COMMIT_FILE.search(text)
    if found is None:
        return None
    return re.sub(r"^file:/+", "/", found["table"]), f"{found['commit']}.json"


# Spark's FAILED_READ_FILE names the file; its root cause (SchemaColumnConvert...) does not.
_UNREADABLE_FILE = re.compile(r"\[FAILED_READ_FILE[.\w]*\] Encountered error while reading file "
                              r"(?P<file>\S+?)\.(?:\s+(?P<why>[^\n]*?))?(?:\s+SQLSTATE|\n|$)")


def unreadable_file(text: str) -> tuple[str, str] | None:
    """(file, what Spark says is wrong with it) when `text` is a failure to read one file."""
    found = _UNREADABLE_FILE.search(text)
    if found is None:
        return None
    why = (found["why"] or "").strip().rstrip(".")
    return re.sub(r"^file:/+", "/", found["file"]), "" if why.startswith("SQLSTATE") else why


def operator_fixable(exc: BaseException) -> bool:
    """A failure the operator repairs (exit code 2), not a bug of this program (1)."""
    text = f"{root_cause(exc)} {exc}"
    return damaged_commit(text) is not None or unreadable_file(text) is not None


def describe_failure(stage: str, exc: BaseException) -> str:
    cause = root_cause(exc)
    text = f"{cause} {exc}"
    damaged = damaged_commit(text)
    if damaged is not None:
        table, commit = damaged
        version = int(commit.removesuffix(".json"))
        return (f"stage '{stage}' failed: table {table} has a damaged commit "
                f"_delta_log/{commit} ({cause[:200]}). A writer killed while committing can "
                f"leave one: if it is the table's newest commit and the run that wrote it did "
                f"not finish, move that file (and its .crc files) out of _delta_log and rerun, "
                f"and that work is redone; otherwise restore the table to version "
                f"{max(version - 1, 0)} from a backup or a clone")
    bad_file = unreadable_file(text)
    if bad_file is not None:
        path, why = bad_file
        return (f"stage '{stage}' failed: input file {path} cannot be read: {(why or cause)[:300]} "
                f"(replace or remove that file, then rerun: committed work is kept)")
    hint = hint_for(text)
    message = f"stage '{stage}' failed: {cause[:500]}"
    return f"{message} ({hint})" if hint else message
