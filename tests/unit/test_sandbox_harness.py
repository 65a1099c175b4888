"""The harness's own rules as functions: which SystemExit is a normal end, which asserts
are the tests', and which files come back."""

from __future__ import annotations

import pytest

from udfs.sandbox.handback import check_names, parse_records
from udfs.sandbox.harness import (
    ASSERT_HOOK,
    exit_is_normal_end,
    last_statement_lines,
    rewrite_asserts,
)

PATH = "/sandbox/program.py"


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("a = 1\nassert a\n", (2, 2)),
        ("import unittest\nif __name__ == '__main__':\n    x = 1\n    unittest.main(\n        exit=True)\n", (4, 5)),
        ("if __name__ == '__main__':\n    pass\nelse:\n    pass\n", (1, 4)),  # not a plain guard
        ("", (0, 0)),
        ("def (:\n", (0, 0)),
    ],
)
def test_last_statement_lines(source: str, lines: tuple[int, int]) -> None:
    assert last_statement_lines(source.encode()) == lines


def raised_at(source: str) -> SystemExit:
    """The SystemExit that running `source` as the program raises."""
    try:
        exec(compile(source, PATH, "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        return exc
    raise AssertionError("no SystemExit")


@pytest.mark.parametrize(
    ("source", "normal"),
    [
        ("import sys\nassert True\nsys.exit(0)\n", True),
        ("import sys\nsys.exit()\n", True),
        ("import sys\nsys.exit(False)\n", True),
        ("import sys\nsys.exit(1)\n", False),
        ("import sys\nsys.exit('failed')\n", False),
        ("import sys\nsys.exit(0.0)\n", False),  # plain Python exits 1 for it
        ("import sys\nsys.exit(0)\nassert False\n", False),
        ("import sys\ndef main():\n    sys.exit(0)\nif __name__ == '__main__':\n    main()\n", True),
        ("import sys\nif __name__ == '__main__':\n    sys.exit(0)\n    x = 1\n", False),
    ],
)
def test_a_success_exit_is_a_normal_end_only_from_the_last_statement(source: str, normal: bool) -> None:
    exc = raised_at(source)
    assert exit_is_normal_end(exc, PATH, source.encode()) is normal


def test_an_exit_from_code_compiled_under_another_name_is_not_the_program_s() -> None:
    exc = raised_at("import sys\nexec(compile('import sys; sys.exit(0)', 'other.py', 'exec'))\n")
    # The module frame of the program is still found (line 2, its last statement).
    source = b"import sys\nexec(compile('import sys; sys.exit(0)', 'other.py', 'exec'))\n"
    assert exit_is_normal_end(exc, PATH, source)
    assert not exit_is_normal_end(exc, "/elsewhere.py", source)


PASSING_CASE = "class T(unittest.TestCase):\n    def test_ok(self):\n        pass\n"


@pytest.mark.parametrize(
    ("rest", "normal"),
    [
        # unittest.main() ends the program: the rest may show examples, never test.
        ("print(2 * 21)\n", True),
        ("assert 2 * 21 == 42\n", False),
        ("check()\n", False),
        ("show()\n", True),
    ],
)
def test_unittest_main_ends_a_program_that_tests_nothing_after_it(rest: str, normal: bool) -> None:
    import types

    source = ("import unittest\n" + PASSING_CASE + "def check():\n    assert 2 * 21 == 42\n"
              "def show():\n    print(42)\nunittest.main(module=PROGRAM, argv=['program'])\n" + rest)
    program = types.ModuleType("program")
    program.PROGRAM = program  # type: ignore[attr-defined]
    with pytest.raises(SystemExit) as raised:
        exec(compile(source, PATH, "exec"), program.__dict__)
    ran = {"program.T.test_ok"}
    assert exit_is_normal_end(raised.value, PATH, source.encode(), ran=ran) is normal
    # Never when unittest ran nothing, nor from a line before the tests start.
    assert not exit_is_normal_end(raised.value, PATH, source.encode(), ran=set())
    assert not exit_is_normal_end(raised.value, PATH, source.encode(), tests_from_line=10, ran=ran)


def test_asserts_are_rewritten_from_the_first_test_line_only() -> None:
    import ast

    source = "def root(x):\n    assert x >= 0\n    return x\nassert root(4) == 4, 'message'\n"
    tree = ast.parse(source)
    rewrite_asserts(tree, first_line=4)
    hooked = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)
              and isinstance(node.test, ast.Call) and getattr(node.test.func, "id", "") == ASSERT_HOOK]
    assert hooked == [4]
    seen: list[object] = []
    namespace = {ASSERT_HOOK: lambda value: seen.append(value) or bool(value)}
    exec(compile(tree, PATH, "exec"), namespace)
    assert seen == [True]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc/passwd", "nul\0"])
def test_kept_names_must_be_plain(name: str) -> None:
    with pytest.raises(ValueError, match="plain file names"):
        check_names([name])


def test_hand_back_records_keep_only_what_was_asked_and_stop_at_a_bad_record() -> None:
    stream = (b"out.txt\x003\nabc" + b"other.txt\x002\nzz" + b"out.txt\x001\nX"
              + b"late.txt\x00999\nshort")
    assert parse_records(stream, ["out.txt", "late.txt"]) == {"out.txt": b"abc"}
    assert parse_records(b"x\x00nan\nabc", ["x"]) == {}
    assert parse_records(b"", ["x"]) == {}
