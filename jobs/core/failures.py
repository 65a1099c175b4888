"""One readable line for a stage that failed inside Spark.

A failed Spark job surfaces as a Py4J error or a captured Spark exception whose text
is a Java stack trace hundreds of lines long. The operator needs the root cause (a
full disk, an unreadable file) and what to do about it; the full trace still goes to
the `runs` table and the log at debug level.
"""

from __future__ import annotations

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


def describe_failure(stage: str, exc: BaseException) -> str:
    cause = root_cause(exc)
    hint = hint_for(f"{cause} {exc}")
    message = f"stage '{stage}' failed: {cause[:500]}"
    return f"{message} ({hint})" if hint else message
