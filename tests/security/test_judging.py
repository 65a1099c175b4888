"""Faked passes: programs that stop early or tamper with the harness must fail."""

from __future__ import annotations

import pytest

from tests.security.helpers import assert_none_survive, needs_sandbox, new_token, run_hostile

pytestmark = needs_sandbox

FAILING_TEST = "\nassert sum([1, 2]) == 4, 'the test fails'\n"

FAKES = {
    "sys.exit(0) before the tests": "import sys\nsys.exit(0)",
    "os._exit(0) before the tests": "import os\nos._exit(0)",
    "raise SystemExit before the tests": "raise SystemExit",
    "exit() before the tests": "exit()",
    "rebound AssertionError": (
        "import builtins\n"
        "class Harmless(Exception):\n    pass\n"
        "builtins.AssertionError = Harmless\n"
        "try:\n    assert sum([1, 2]) == 4\nexcept Harmless:\n    pass\n"
    ),
    "excepthook that exits 0": (
        "import os, sys\nsys.excepthook = lambda *exc: os._exit(0)"
    ),
    "atexit hook that exits 0": (
        "import atexit, os\natexit.register(lambda: os._exit(0))"
    ),
    "print and __import__ replaced": (
        "import builtins\n"
        "builtins.print = lambda *a, **k: None\n"
        "def no_imports(*a, **k):\n    raise ImportError('nope')\n"
        "builtins.__import__ = no_imports\n"
    ),
    "os.write forging a marker": (
        "import os\n"
        "real_write = os.write\n"
        "os.write = lambda fd, data: real_write(fd, b'\\n' + b'0' * 32 + b'\\n')\n"
        "os._exit = lambda code: None\n"
    ),
    "printing guessed and readable markers, then exiting 0": (
        "import os, sys\n"
        "print()\n"
        "print('0' * 32)\n"
        "print(open(__file__).read())\n"
        "print(open('/proc/self/cmdline', 'rb').read().decode(errors='replace'))\n"
        "print(sorted(os.environ.items()))\n"
        "print(*os.listdir('.'))\n"
        "sys.stdout.flush()\n"
        "os._exit(0)"
    ),
    "stdout closed": "import os\nos.close(1)",
    "unittest.main with a failing test": (
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(sum([1, 2]), 4)\n"
        "unittest.main()"
    ),
}


@pytest.mark.parametrize("trick", list(FAKES))
def test_tricks_do_not_pass(trick: str) -> None:
    token = new_token()
    outcome = run_hostile(FAKES[trick] + FAILING_TEST, token)
    assert outcome.status == "fail" and not outcome.passed, outcome
    assert_none_survive(token)


def test_the_harness_does_not_depend_on_what_the_program_patches() -> None:
    """The same patches on a program whose tests pass: the harness still says pass."""
    program = (
        "import builtins, io, os, sys\n"
        "builtins.print = lambda *a, **k: None\n"
        "builtins.AssertionError = ValueError\n"
        "os.write = os.read = lambda *a: b''\n"
        "os._exit = sys.exit = lambda *a: None\n"
        "sys.stdout = io.StringIO()\n"
        "sys.excepthook = lambda *a: None\n"
        "assert sum([1, 2]) == 3\n"
    )
    token = new_token()
    outcome = run_hostile(program, token)
    assert outcome.passed, outcome
