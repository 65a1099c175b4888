"""Shipped (see __init__): whether an output answers an input, as EvalPlus compares them.

`_sa_match(out, exp, atol, oracle, args)`, with documented differences from EvalPlus:
- exact first: `out == exp`, except that NaN equals NaN at the same place (EvalPlus
  would fail a NaN answer; no reference output here is NaN). Types matter as `==` says:
  a list never equals a tuple, 1 == 1.0 == True.
- floats: when exact fails and the task's atol is non-zero, or the expected value is a
  float or a non-empty list/tuple of floats (then atol = 1e-6), the output must have the
  expected type (and length), and each number must be within atol + 1e-7 * |expected|
  (np.allclose's rule, written out; nested sequences element by element). EvalPlus keeps
  the 1e-6 for the task's later inputs once one float output is seen; here it is per input.
- special oracles of EvalPlus (udfs/evaluation/problems.py names them per entry point):
  poly_root (HumanEval+ `find_zero`: |poly(args[0], out)| <= atol), set_eq (set(out) ==
  set(exp)), not_none (the expected value is whether the reference returned non-None; a
  bool output is compared as is), always (any output), or_zero (exact, or 0),
  surface_area and digit_distance (exact, or EvalPlus's alternative answer).
"""

import math as _sa_math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def _sa_is_floats(x: object) -> bool:
    """A float, or a non-empty list/tuple of floats only: expected values that get atol 1e-6."""
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _sa_same(out: "Any", exp: "Any") -> bool:
    """out == exp, with NaN equal to NaN in the same place."""
    try:
        if out == exp:
            return True
    except Exception:
        return False
    if isinstance(out, float) and isinstance(exp, float):
        return out != out and exp != exp
    if type(out) is type(exp) and isinstance(exp, (list, tuple)) and isinstance(out, (list, tuple)):
        return len(out) == len(exp) and all(_sa_same(o, e) for o, e in zip(out, exp, strict=False))
    if isinstance(out, dict) and isinstance(exp, dict):
        return out.keys() == exp.keys() and all(_sa_same(out[k], exp[k]) for k in exp)
    return False


_SA_NUMBER = (int, float, complex)


def _sa_close(out: "Any", exp: "Any", atol: float, rtol: float = 1e-07) -> bool:
    """np.allclose(out, exp, rtol, atol) for numbers and (nested) sequences of equal length."""
    if isinstance(exp, (list, tuple)):
        if not isinstance(out, (list, tuple)) or len(out) != len(exp):
            return False
        return all(_sa_close(o, e, atol, rtol) for o, e in zip(out, exp, strict=False))
    if isinstance(out, _SA_NUMBER) and isinstance(exp, _SA_NUMBER):
        if out == exp:
            return True
        if isinstance(out, float) and isinstance(exp, float) and out != out and exp != exp:
            return True
        try:
            return abs(out - exp) <= atol + rtol * abs(exp)
        except (OverflowError, TypeError):
            return False
    return _sa_same(out, exp)


def _sa_poly(xs: "Sequence[Any]", x: float) -> float:
    """The polynomial with coefficients xs (lowest power first) at x, as HumanEval/32 has it."""
    return sum(coeff * _sa_math.pow(x, i) for i, coeff in enumerate(xs))


def _sa_surface_area(base_edge: float, height: float) -> int:
    """MBPP+ surface_Area's alternative answer: `height` as the pyramid's, not the slant height."""
    slant = _sa_math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)


def _sa_digit_distance(a: int, b: int) -> int:
    """MBPP+ digit_distance_nums's alternative answer: the shorter number padded with zeros."""
    left, right = str(a), str(b)
    width = max(len(left), len(right))
    return sum(abs(int(x) - int(y)) for x, y in zip(left.zfill(width), right.zfill(width), strict=False))


def _sa_match(out: "Any", exp: "Any", atol: float = 0.0, oracle: "str | None" = None,
              args: "Sequence[Any]" = ()) -> bool:
    """Whether the output `out` answers an input whose expected output is `exp`."""
    if oracle == "poly_root":
        return abs(_sa_poly(args[0], out)) <= atol
    exact = _sa_same(out, exp)
    if oracle == "always":
        exact = True
    elif oracle == "or_zero":
        exact = exact or out == 0
    elif oracle == "surface_area":
        exact = exact or abs(out - _sa_surface_area(*args)) <= atol
    elif oracle == "digit_distance":
        exact = exact or out == _sa_digit_distance(*args)
    elif oracle == "set_eq":
        exact = set(out) == set(exp)
    elif oracle == "not_none":
        exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if exact:
        return True
    if atol == 0 and _sa_is_floats(exp):
        atol = 1e-6
    if atol == 0 or type(out) is not type(exp):
        return False
    # out has exp's type here; isinstance(out, ...) is for the type checker
    if isinstance(exp, (list, tuple)) and isinstance(out, (list, tuple)) and len(out) != len(exp):
        return False
    return _sa_close(out, exp, atol)
