"""The harness's own rules as functions: which SystemExit is a normal end."""

from __future__ import annotations

import pytest

from udfs.sandbox.harness import exit_is_normal_end, last_statement_lines

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
        ("import sys\nsys.exit(0)\nassert False\n", False),
        ("import sys\ndef main():\n    sys.exit(0)\nif __name__ == '__main__':\n    main()\n", True),
        ("import sys\nif __name__ == '__main__':\n    sys.exit(0)\n    x = 1\n", False),
    ],
)
def test_a_success_exit_is_a_normal_end_only_from_the_last_statement(source: str, normal: bool) -> None:
    exc = raised_at(source)
    assert exit_is_normal_end(exc, PATH, last_statement_lines(source.encode())) is normal


def test_an_exit_from_code_compiled_under_another_name_is_not_the_program_s() -> None:
    exc = raised_at("import sys\nexec(compile('import sys; sys.exit(0)', 'other.py', 'exec'))\n")
    # The module frame of the program is still found (line 2, its last statement).
    assert exit_is_normal_end(exc, PATH, (2, 2))
    assert not exit_is_normal_end(exc, "/elsewhere.py", (2, 2))
