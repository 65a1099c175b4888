"""Shipped (see __init__): the check program's entry point, after calls.py and compare.py.

`_sa_check` calls the completion's function (the code before it) on each input of one
variant, each call under its own CPU-time limit, and compares each output with the
reference's, loaded one at a time from `<variant>.pickle` in the program's dir. The first
input that raises, runs out of time or answers wrongly ends the program with an
AssertionError naming it; the last line of the program's stderr is the verdict's detail.
"""

import pickle as _sa_pickle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from udfs.evaluation.shipped.calls import (
        _sa_call,
        _sa_load,
        _sa_no_int_digit_limit,
        _sa_short,
        _SATimeout,
    )
    from udfs.evaluation.shipped.compare import _sa_match


def _sa_check(entry_point: str, inputs_blob: str, atol: float, oracle: "str | None",
              limits: "Sequence[float]", variant: str) -> None:
    """inputs_blob: [argument list per input], pickled; limits: CPU seconds per input."""
    _sa_no_int_digit_limit()
    fn = globals().get(entry_point)
    if not callable(fn):
        raise AssertionError("no function named " + entry_point)
    cases = _sa_load(inputs_blob)
    with open(variant + ".pickle", "rb") as stream:
        for index, (args, cpu_limit) in enumerate(zip(cases, limits, strict=False)):
            exp = _sa_pickle.load(stream)
            shown = _sa_short(args, 120)
            try:
                out = _sa_call(fn, list(args), cpu_limit)
            except _SATimeout:
                raise AssertionError(variant + " input " + str(index) + " " + shown + ": over "
                                     + str(round(cpu_limit, 2)) + " s of CPU") from None
            except BaseException as exc:
                raise AssertionError(variant + " input " + str(index) + " " + shown + ": raised "
                                     + type(exc).__name__ + ": " + _sa_short(exc)) from None
            try:
                ok = _sa_match(out, exp, atol, oracle, args)
                problem = ""
            except Exception as exc:
                ok, problem = False, " (comparing raised " + type(exc).__name__ + ")"
            if not ok:
                raise AssertionError(variant + " input " + str(index) + " " + shown + ": expected "
                                     + _sa_short(exp) + ", got " + _sa_short(out) + problem)
