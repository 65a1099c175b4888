"""Faked passes: programs that stop early or tamper with the harness must fail."""

from __future__ import annotations

import pytest

from tests.security.helpers import (
    LEVEL,
    LIMITS,
    assert_none_survive,
    needs_sandbox,
    new_token,
    run_hostile,
)
from udfs.sandbox import run_program

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
    # The completion token: gone from every descriptor before the program runs, never in
    # a frame's locals, and not inherited by an interpreter the program execs.
    "reading the token from its descriptors": (
        "import os\n"
        "for name in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        os.set_blocking(int(name), False)\n"
        "        data = os.read(int(name), 64)\n"
        "    except OSError:\n"
        "        continue\n"
        "    os.write(1, b'\\n' + data.strip() + b'\\n')\n"
        "os._exit(0)"
    ),
    "reading the token from the harness's frame locals": (
        "import os, sys\n"
        "frame = sys._getframe(0)\n"
        "while frame is not None:\n"
        "    for value in list(frame.f_locals.values()):\n"
        "        if type(value) is int and 2 < value < 1024:  # a descriptor number\n"
        "            try:\n"
        "                os.set_blocking(value, False)\n"
        "                value = os.read(value, 64)\n"
        "            except OSError:\n"
        "                continue\n"
        "        if isinstance(value, str):\n"
        "            value = value.encode(errors='replace')\n"
        "        if isinstance(value, (bytes, bytearray)):\n"
        "            os.write(1, b'\\n' + bytes(value).strip() + b'\\n')\n"
        "    frame = frame.f_back\n"
        "os._exit(0)"
    ),
    "an exec'd interpreter reading inherited descriptors": (
        "import os, sys\n"
        "code = ('import os\\nfor fd in range(3, 256):\\n    try:\\n'\n"
        "        '        os.set_blocking(fd, False)\\n        data = os.read(fd, 64)\\n'\n"
        "        '    except OSError:\\n        continue\\n'\n"
        "        '    os.write(1, bytes([10]) + data.strip() + bytes([10]))\\n')\n"
        "os.execv(sys.executable, [sys.executable, '-c', code])"
    ),
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


# Correct programs, however they end: unittest, a final sys.exit(0), TestCases left to run.
PASSING = {
    "unittest.main with passing tests": (
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(sum([1, 2]), 3)\n"
        "if __name__ == '__main__':\n    unittest.main()\n"
    ),
    "a final sys.exit(0) after passing asserts": (
        "import sys\nassert sum([1, 2]) == 3\nsys.exit(0)\n"
    ),
    "sys.exit() closing the main block": (
        "import sys\n"
        "def check():\n    assert sum([1, 2]) == 3\n"
        "if __name__ == '__main__':\n    check()\n    print('all passed')\n    sys.exit()\n"
    ),
    "a passing TestCase the program never runs": (
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(sum([1, 2]), 3)\n"
    ),
}

NOT_PASSING = {
    "a failing TestCase the program never runs": (
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(sum([1, 2]), 4)\n"
    ),
    "a failing TestCase run by a runner whose result is ignored": (
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(sum([1, 2]), 4)\n"
        "unittest.TextTestRunner().run(unittest.TestLoader().loadTestsFromTestCase(T))\n"
    ),
    "sys.exit(0) half-way through the main block": (
        "import sys\n"
        "if __name__ == '__main__':\n    sys.exit(0)\n    assert sum([1, 2]) == 4\n"
    ),
    "os._exit(0) as the last statement": (
        "import os\nassert sum([1, 2]) == 3\nos._exit(0)\n"
    ),
    "sys.exit(0) from a test that stops before the rest": (
        "import sys\nsys.exit(0)\nassert sum([1, 2]) == 3\n"
    ),
}


@pytest.mark.parametrize("program", list(PASSING))
def test_correct_programs_pass_however_they_end(program: str) -> None:
    outcome = run_hostile(PASSING[program], new_token())
    assert outcome.status == "pass", outcome


@pytest.mark.parametrize("program", list(NOT_PASSING))
def test_unfinished_or_failing_tests_do_not_pass(program: str) -> None:
    outcome = run_hostile(NOT_PASSING[program], new_token())
    assert outcome.status == "fail" and not outcome.passed, outcome


def test_a_program_python_cannot_read_fails_with_the_reason_and_never_runs() -> None:
    # A lone surrogate cannot be written as UTF-8; written with replacement characters
    # instead, a program plain Python could not run would have passed.
    outcome = run_program("x = '\udc80'\nassert True\n", LIMITS, isolation=LEVEL)
    assert outcome.status == "fail" and not outcome.passed
    assert outcome.exit_code is None and "not valid UTF-8" in outcome.detail
