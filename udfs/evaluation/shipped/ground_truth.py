"""Shipped (see __init__): the ground truth program's entry point, after calls.py.

`_sa_ground_truth` runs the reference solution (the code before it) on every input of
each variant and writes, in the program's dir, `<variant>.pickle` (the outputs, one
pickle per input, in input order: the check loads them one at a time) and `output_file`
(JSON: {variant: {"cpu": [CPU seconds per input]}, "overhead_cpu": the harness's own}).
"""

import json as _sa_json
import pickle as _sa_pickle
import time as _sa_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from udfs.evaluation.shipped.calls import (
        _sa_call,
        _sa_load,
        _sa_no_int_digit_limit,
        _sa_short,
    )


def _sa_ground_truth(entry_point: str, inputs_blob: str, oracle: "str | None",
                     output_file: str) -> None:
    """inputs_blob: {variant: [argument list per input]}, pickled (calls._sa_load)."""
    _sa_no_int_digit_limit()
    fn = globals()[entry_point]
    start = _sa_time.process_time()
    calls = 0.0
    result = {}
    for variant, cases in _sa_load(inputs_blob).items():
        cpu = []
        # One pickle per input, one after another: the check loads them one at a time.
        with open(variant + ".pickle", "wb") as stream:
            for index, args in enumerate(cases):
                began = _sa_time.process_time()
                try:
                    out = _sa_call(fn, args, None)
                except BaseException as exc:
                    raise AssertionError(
                        "reference solution raised " + type(exc).__name__ + " on " + variant
                        + " input " + str(index) + ": " + _sa_short(exc)) from None
                spent = _sa_time.process_time() - began
                calls += spent
                cpu.append(spent)
                if oracle == "not_none":
                    out = out is not None
                try:
                    _sa_pickle.dump(out, stream, 4)
                except Exception as exc:
                    raise AssertionError(
                        "reference output on " + variant + " input " + str(index)
                        + " cannot be pickled: " + _sa_short(exc)) from None
        result[variant] = {"cpu": cpu}
    result["overhead_cpu"] = _sa_time.process_time() - start - calls
    with open(output_file, "w") as handle:
        _sa_json.dump(result, handle)
