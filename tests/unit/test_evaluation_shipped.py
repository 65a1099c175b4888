"""udfs/evaluation/shipped: the code that runs in the sandbox, imported as the modules it is.

Expected values come from the rules the modules document (compare.py's docstring:
NaN equality, the tolerance atol + 1e-7 * |expected|, the implicit 1e-6 for floats,
types as `==` says, EvalPlus's oracles), worked out by hand.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import pickle
import signal
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from udfs.evaluation import Problem, check_program, ground_truth_program, shipped_source
from udfs.evaluation.programs import CHECK_PARTS, GROUND_TRUTH_PARTS
from udfs.evaluation.shipped.calls import (
    _sa_call,
    _sa_load,
    _sa_no_int_digit_limit,
    _sa_short,
    _SATimeout,
)
from udfs.evaluation.shipped.compare import (
    _sa_close,
    _sa_digit_distance,
    _sa_is_floats,
    _sa_match,
    _sa_same,
    _sa_surface_area,
)

NAN = float("nan")
SHIPPED = ("calls.py", "compare.py", "ground_truth.py", "check.py")


# --- exact comparison ---------------------------------------------------------------------

def test_nan_equals_nan_only_in_the_same_place():
    assert _sa_same(NAN, NAN)
    assert _sa_same([1.0, NAN], [1.0, NAN])
    assert _sa_same({"a": (NAN, 2)}, {"a": (NAN, 2)})
    assert not _sa_same([NAN, 1.0], [1.0, NAN])
    assert not _sa_same(NAN, 0.0)
    assert not _sa_same({"a": NAN}, {"b": NAN})


def test_types_count_as_equality_says():
    assert _sa_same(1, 1.0) and _sa_same(True, 1) and _sa_same(1.0, True)
    assert not _sa_same([1, 2], (1, 2))
    assert not _sa_same([NAN], (NAN,))  # NaN places only inside the same type of sequence
    assert not _sa_same("1", 1)


def test_a_comparison_that_raises_is_no_match():
    class Angry:
        def __eq__(self, other):
            raise RuntimeError("no")

    assert not _sa_same(Angry(), 1)


# --- tolerance ------------------------------------------------------------------------------

def test_which_expected_values_get_the_implicit_tolerance():
    assert _sa_is_floats(0.5)
    assert _sa_is_floats([0.5, 1.5]) and _sa_is_floats((0.5,))
    assert not _sa_is_floats([])
    assert not _sa_is_floats([0.5, 1])  # an int among them
    assert not _sa_is_floats([[0.5]])  # nested: not a list of floats
    assert not _sa_is_floats(1)


def test_implicit_tolerance_is_1e6_plus_1e7_relative():
    # expected 1000.0: within 1e-6 + 1e-7 * 1000 = 1.01e-4
    assert _sa_match(1000.0001, 1000.0)
    assert not _sa_match(1000.0002, 1000.0)
    # expected 0.0: within 1e-6
    assert _sa_match(5e-7, 0.0)
    assert not _sa_match(2e-6, 0.0)
    assert _sa_match([1.0, 2.0 + 5e-7], [1.0, 2.0])


def test_no_tolerance_without_atol_unless_floats_are_expected():
    assert not _sa_match(1.0000001, 1)  # int expected
    assert not _sa_match([1.0, 2.0000001], [1.0, 2])  # not only floats
    assert not _sa_match([[1.0000001]], [[1.0]])  # nested floats: no implicit atol
    assert _sa_match([[1.0000001]], [[1.0]], atol=1e-4)  # the task's atol applies nested


def test_tolerance_needs_the_expected_type_and_length():
    assert not _sa_match(1, 1.0000001)  # float expected, int out
    assert not _sa_match((1.0,), [1.0 + 1e-9])  # tuple for a list
    assert not _sa_match([1.0], [1.0, 2.0], atol=0.1)
    assert _sa_match(0.50004, 0.5, atol=1e-4)
    assert not _sa_match(0.5002, 0.5, atol=1e-4)


def test_close_is_allclose_written_out():
    assert _sa_close(100.000005, 100.0, atol=0.0)  # rtol alone: 1e-7 * 100 = 1e-5
    assert not _sa_close(100.00002, 100.0, atol=0.0)
    assert _sa_close(complex(1, 1.0000001), complex(1, 1), atol=1e-6)
    assert _sa_close(NAN, NAN, atol=1e-6)
    assert not _sa_close(NAN, 1.0, atol=1e-6)
    assert _sa_close([1.0, [2.0, 3.0]], [1.0, [2.00001, 3.0]], atol=1e-4)
    assert not _sa_close([1.0, [2.0]], [1.0, [2.0, 3.0]], atol=1e-4)
    assert not _sa_close("a", 1.0, atol=1.0)


# --- EvalPlus's oracles -------------------------------------------------------------------------

def test_poly_root_checks_the_polynomial_at_the_answer():
    xs = [-2, 0, 1]  # x**2 - 2: roots at +-sqrt(2); the expected value plays no part
    assert _sa_match(1.41421356, 0.0, atol=1e-4, oracle="poly_root", args=(xs,))
    assert _sa_match(-1.41421356, 0.0, atol=1e-4, oracle="poly_root", args=(xs,))
    assert not _sa_match(1.5, 1.5, atol=1e-4, oracle="poly_root", args=(xs,))  # 0.25 off


def test_set_oracle_ignores_order_duplicates_and_sequence_type():
    assert _sa_match([1, 2, 2], (2, 1), oracle="set_eq")
    assert not _sa_match([1], (2, 1), oracle="set_eq")


def test_not_none_oracle():
    # the expected value is whether the reference returned something other than None
    assert _sa_match(object(), True, oracle="not_none")
    assert _sa_match(None, False, oracle="not_none")
    assert not _sa_match(None, True, oracle="not_none")
    assert _sa_match(True, True, oracle="not_none")  # a bool answer is compared as is
    assert not _sa_match(False, True, oracle="not_none")


def test_or_zero_and_always():
    assert _sa_match(0, 5, oracle="or_zero") and _sa_match(5, 5, oracle="or_zero")
    assert not _sa_match(1, 5, oracle="or_zero")
    assert _sa_match(None, 3, oracle="always")


def test_surface_area_alternative_takes_height_as_the_pyramids():
    # base 3, height 4: slant sqrt(1.5**2 + 4**2) = sqrt(18.25); 9 + 6 * 4.2720 = 34.63 -> 35
    assert _sa_surface_area(3, 4) == 35
    assert _sa_match(35, 33, oracle="surface_area", args=(3, 4))  # 33 = 9 + 2 * 3 * 4
    assert _sa_match(33, 33, oracle="surface_area", args=(3, 4))
    assert not _sa_match(34, 33, oracle="surface_area", args=(3, 4))


def test_digit_distance_alternative_pads_with_zeros():
    assert _sa_digit_distance(123, 256) == 1 + 3 + 3
    assert _sa_digit_distance(5, 123) == 1 + 2 + 2  # 005 against 123
    assert _sa_match(5, 4, oracle="digit_distance", args=(5, 123))
    assert not _sa_match(6, 4, oracle="digit_distance", args=(5, 123))


# --- calls ---------------------------------------------------------------------------------------

def test_short_cuts_long_reprs():
    assert _sa_short("ab") == "'ab'"
    text = _sa_short("x" * 200, 20)
    assert text == "'" + "x" * 16 + "..." and len(text) == 20

    class Bad:
        def __repr__(self):
            raise ValueError("no")

    assert _sa_short(Bad()) == "<unprintable Bad>"


def test_load_reads_base64_pickles():
    value = {"base": [[(1, 2), {3}], [complex(1, 2)]]}
    assert _sa_load(base64.b64encode(pickle.dumps(value, protocol=4)).decode()) == value


def test_call_swallows_output_and_returns(capsys):
    def noisy(a, b):
        print("out")
        print("err", file=sys.stderr)
        return a + b

    assert _sa_call(noisy, [1, 2], None) == 3
    assert capsys.readouterr() == ("", "")
    print("after")
    assert capsys.readouterr().out == "after\n"


def test_call_stops_at_its_cpu_limit_through_except_exception():
    def spin():
        while True:
            with contextlib.suppress(Exception):  # _SATimeout is no Exception
                sum(range(1000))

    saved = signal.getsignal(signal.SIGPROF)
    try:
        with pytest.raises(_SATimeout):
            _sa_call(spin, [], 0.05)
        assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGPROF, saved)


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="Python 3.11+")
def test_big_ints_become_text():
    saved = sys.get_int_max_str_digits()
    try:
        _sa_no_int_digit_limit()
        assert len(str(10 ** 5000)) == 5001
    finally:
        sys.set_int_max_str_digits(saved)


# --- the modules as shipped ------------------------------------------------------------------------

def _runtime_imports(tree: ast.Module) -> list[str]:
    """Modules imported outside `if TYPE_CHECKING:` blocks."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                names += [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                names.append(inner.module or "")
    return names


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_modules_need_the_standard_library_only(name):
    tree = ast.parse(shipped_source(name))
    imports = _runtime_imports(tree)
    assert "__future__" not in imports  # it would be a SyntaxError in the middle of a program
    assert all(module.split(".")[0] in sys.stdlib_module_names for module in imports), imports
    top_names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)]
    top_names += [target.id for node in tree.body if isinstance(node, ast.Assign)
                  for target in node.targets if isinstance(target, ast.Name)]
    assert all(n.startswith(("_sa_", "_SA")) or n == "TYPE_CHECKING" for n in top_names), top_names


def test_every_shipped_module_is_in_a_program():
    assert set(GROUND_TRUTH_PARTS) | set(CHECK_PARTS) == set(SHIPPED)
    folder = Path(__file__).resolve().parents[2] / "udfs" / "evaluation" / "shipped"
    assert {p.name for p in folder.glob("*.py")} == {*SHIPPED, "__init__.py"}


HALF = Problem(
    "humanevalplus", "HumanEval/half", 'def half(x):\n    """x / 2"""\n', "half",
    "    return x / 2\n", "complete",
    base_inputs="[[2], [3]]", plus_inputs="[[1e-9], [7], [100]]",
)


def run_here(program: str, directory: Path, monkeypatch) -> None:
    """The program run in this process as the sandbox runs it: as __main__, in its dir."""
    monkeypatch.chdir(directory)
    saved = signal.getsignal(signal.SIGPROF)
    try:
        exec(compile(program, "program.py", "exec"), {"__name__": "__main__"})
    finally:
        signal.signal(signal.SIGPROF, saved)


def test_programs_end_with_one_call_of_literal_arguments():
    limits = [1.0, 1.0]
    for program, entry in ((ground_truth_program(HALF), "_sa_ground_truth"),
                           (check_program(HALF, "    return x / 2\n", "base", limits), "_sa_check")):
        last = ast.parse(program).body[-1]
        assert isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
        assert isinstance(last.value.func, ast.Name) and last.value.func.id == entry
        assert not last.value.args
        for keyword in last.value.keywords:
            ast.literal_eval(keyword.value)
    with pytest.raises(ValueError, match="ground truth of 1 inputs for 2"):
        check_program(HALF, "    return x / 2\n", "base", [1.0])


def test_ground_truth_and_check_programs_outside_the_sandbox(tmp_path, monkeypatch):
    run_here(ground_truth_program(HALF), tmp_path, monkeypatch)
    report = json.loads((tmp_path / "expected.json").read_text())
    assert set(report) == {"base", "plus", "overhead_cpu"}
    assert len(report["base"]["cpu"]) == 2 and len(report["plus"]["cpu"]) == 3
    with (tmp_path / "plus.pickle").open("rb") as stream:
        assert [pickle.load(stream) for _ in range(3)] == [1e-9 / 2, 3.5, 50.0]

    run_here(check_program(HALF, "    return x * 0.5\n", "plus", [1.0] * 3), tmp_path, monkeypatch)
    wrong = check_program(HALF, "    return x / 2 if x < 50 else 0\n", "plus", [1.0] * 3)
    with pytest.raises(AssertionError, match=r"^plus input 2 \[100\]: expected 50.0, got 0$"):
        run_here(wrong, tmp_path, monkeypatch)
    missing = check_program(replace(HALF, entry_point="double"), "    return x / 2\n", "base", [1.0] * 2)
    with pytest.raises(AssertionError, match=r"^no function named double$"):
        run_here(missing, tmp_path, monkeypatch)


def test_the_harness_shadows_no_global_of_the_code_under_test(tmp_path, monkeypatch):
    # Arguments are passed to the entry point, not set as globals: the code's own
    # globals (here LIMITS, INPUTS, ATOL) stay as it defined them.
    code = "LIMITS = 3\nINPUTS = 4\nATOL = 5\n\n\ndef half(x):\n    return (LIMITS + INPUTS + ATOL - 12) + x / 2\n"
    run_here(ground_truth_program(HALF), tmp_path, monkeypatch)
    run_here(check_program(HALF, code, "base", [1.0] * 2), tmp_path, monkeypatch)  # passes
