"""Shipped (see __init__): calling the code under test, and what both programs share.

`_sa_call` runs one call with the code's output swallowed (EvalPlus discards it too) and
a CPU-time limit: SIGPROF after `cpu_limit` CPU seconds raises _SATimeout, which is a
BaseException so that `except Exception` in the code under test does not swallow it.
"""

import base64 as _sa_base64
import pickle as _sa_pickle
import signal as _sa_signal
import sys as _sa_sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


class _SATimeout(BaseException):
    """BaseException: `except Exception` in the code under test does not swallow it."""


class _SANull:
    """What sys.stdout and sys.stderr are during a call: writes go nowhere."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _sa_no_int_digit_limit() -> None:
    """Lets ints of any size become text (Python 3.11+ limits that to 4300 digits)."""
    if hasattr(_sa_sys, "set_int_max_str_digits"):
        _sa_sys.set_int_max_str_digits(0)


def _sa_on_cpu_limit(signum: int, frame: object) -> None:
    raise _SATimeout()


def _sa_call(fn: "Callable[..., Any]", args: "Sequence[Any]", cpu_limit: "float | None") -> "Any":
    """fn(*args) with its output swallowed and a CPU-time limit (None: none)."""
    saved = _sa_sys.stdout, _sa_sys.stderr
    _sa_sys.stdout = _sa_sys.stderr = _SANull()  # pyright: ignore[reportAttributeAccessIssue]
    if cpu_limit is not None:
        _sa_signal.signal(_sa_signal.SIGPROF, _sa_on_cpu_limit)
        _sa_signal.setitimer(_sa_signal.ITIMER_PROF, cpu_limit)
    try:
        return fn(*args)
    finally:
        if cpu_limit is not None:
            _sa_signal.setitimer(_sa_signal.ITIMER_PROF, 0)
        _sa_sys.stdout, _sa_sys.stderr = saved


def _sa_load(blob: str) -> "Any":
    """The value that programs.py pickled and base64-encoded into the program."""
    return _sa_pickle.loads(_sa_base64.b64decode(blob))


def _sa_short(value: object, limit: int = 160) -> str:
    """repr(value), cut to `limit` characters with "..." (a repr that raises is named)."""
    try:
        text = repr(value)
    except BaseException:
        text = "<unprintable " + type(value).__name__ + ">"
    return text if len(text) <= limit else text[: limit - 3] + "..."
