"""Faked passes: programs that stop early or tamper with the harness must fail."""

from __future__ import annotations

import pytest

from tests.security.helpers import (
    HEADER_LINES,
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


# A test's failed assertion is a failure however the program hides it: caught and
# printed, masked by an exit in `finally`, or raised where Python does not stop for it.
CAUGHT_FAILURES = {
    "assert caught and printed": (
        "def add(a, b):\n    return a - b\n"
        "try:\n    assert add(1, 2) == 3\nexcept AssertionError:\n    print('Test failed')\n"
    ),
    "assert masked by sys.exit(0) in finally": (
        "import sys\ndef add(a, b):\n    return a - b\n"
        "try:\n    assert add(1, 2) == 3\nfinally:\n    sys.exit(0)\n"
    ),
    "assert in a thread": (
        "import threading\ndef add(a, b):\n    return a - b\n"
        "def test_add():\n    assert add(1, 2) == 3\n"
        "worker = threading.Thread(target=test_add)\nworker.start()\nworker.join()\n"
    ),
    "assert in a future never read": (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def add(a, b):\n    return a - b\n"
        "def check():\n    assert add(1, 2) == 3\n"
        "with ThreadPoolExecutor() as pool:\n    pool.submit(check)\n"
    ),
    "assert in a forked child whose exit is ignored": (
        "import os\ndef add(a, b):\n    return a - b\n"
        "if os.fork() == 0:\n    try:\n        assert add(1, 2) == 3\n    finally:\n        os._exit(0)\n"
        "os.wait()\n"
    ),
    "unittest failures ignored with exit=False": (
        "import unittest\ndef add(a, b):\n    return a - b\n"
        "class T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n"
        "unittest.main(argv=['program'], exit=False)\n"
    ),
    "atexit hook raising SystemExit(0) after a caught failure": (
        "import atexit\ndef leave():\n    raise SystemExit(0)\natexit.register(leave)\n"
        "try:\n    assert 1 + 1 == 3\nexcept AssertionError:\n    pass\n"
    ),
    "a thread nobody joins, failing after the main code ended": (
        "import threading, time\ndef add(a, b):\n    return a - b\n"
        "def test_add():\n    time.sleep(0.3)\n    assert add(1, 2) == 3\n"
        "threading.Thread(target=test_add).start()\n"
    ),
    "a process nobody joins, failing after the main code ended": (
        "import multiprocessing, time\ndef add(a, b):\n    return a - b\n"
        "def test_add():\n    time.sleep(0.3)\n    assert add(1, 2) == 3\n"
        "if __name__ == '__main__':\n    multiprocessing.Process(target=test_add).start()\n"
    ),
    "doctest failures ignored": (
        "import doctest\ndef add(a, b):\n    \"\"\"\n    >>> add(1, 2)\n    3\n    \"\"\"\n    return a - b\n"
        "doctest.testmod()\n"
    ),
    "a code section whose own main block ends the program before the tests": (
        "import unittest\ndef add(a, b):\n    return a - b\n"
        "if __name__ == '__main__':\n    unittest.main()\n"
        "class TestAdd(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n"
        "if __name__ == '__main__':\n    unittest.main()\n"
    ),
    "sys.exit(0.0), which plain Python exits 1 for": (
        "import sys\nassert sum([1, 2]) == 3\nsys.exit(0.0)\n"
    ),
    "unittest.main() followed by a failing assert it never reaches": (
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(sum([1, 2]), 3)\n"
        "unittest.main()\nassert sum([1, 2]) == 4\n"
    ),
}


# Where the tests start when the program has a code section of its own (line 4).
TESTS_FROM = {"a code section whose own main block ends the program before the tests": 6}


@pytest.mark.parametrize("program", list(CAUGHT_FAILURES))
def test_a_failed_test_assertion_fails_however_it_is_hidden(program: str) -> None:
    token = new_token()
    first_test_line = TESTS_FROM.get(program, 1 - HEADER_LINES) + HEADER_LINES
    outcome = run_hostile(CAUGHT_FAILURES[program], token, tests_from_line=first_test_line)
    assert outcome.status == "fail" and not outcome.passed, outcome
    assert_none_survive(token)


# Correct programs that a marker on stdout, a rerun of their TestCases or a missing
# passwd entry judged wrongly.
CORRECT = {
    "stdout redirected to a file with dup2": (
        "import os\nfd = os.open('log.txt', os.O_WRONLY | os.O_CREAT, 0o644)\nos.dup2(fd, 1)\n"
        "assert sum([1, 2]) == 3\nprint('all passed')\n"
    ),
    "a daemon child printing after the tests": (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    for _ in range(2000):\n        sys.stdout.write('progress ' * 10 + '\\n')\n"
        "    sys.stdout.flush()\n    os._exit(0)\n"
        "assert sum([1, 2]) == 3\n"
    ),
    "output just under the budget": (
        f"import sys\nsys.stdout.write('y' * ({LIMITS.output_bytes} - 8))\nassert sum([1, 2]) == 3\n"
    ),
    "getpass.getuser()": (
        "import getpass\nassert getpass.getuser()\n"
    ),
    "stateful tests run by unittest.main(exit=False)": (
        "import unittest\nCALLS = []\n"
        "class T(unittest.TestCase):\n"
        "    def test_once(self):\n        CALLS.append(1)\n        self.assertEqual(len(CALLS), 1)\n"
        "unittest.main(argv=['program'], exit=False)\nprint('done')\n"
    ),
    "unittest.main() followed by example code": (
        "import unittest\ndef double(x):\n    return 2 * x\n"
        "class T(unittest.TestCase):\n"
        "    def test_double(self):\n        self.assertEqual(double(2), 4)\n"
        "unittest.main()\nprint(double(21))\n"
    ),
    "a test helper's assert that assertRaises expects": (
        "import unittest\n"
        "def close_to(a, b):\n    assert abs(a - b) < 1e-9, (a, b)\n"
        "class T(unittest.TestCase):\n"
        "    def test_helper_refuses_far_values(self):\n"
        "        with self.assertRaises(AssertionError):\n            close_to(1.0, 2.0)\n"
        "        close_to(0.1 + 0.2, 0.3)\n"
        "unittest.main()\n"
    ),
    "a non-daemon thread writing the result after the main code": (
        "import threading, time\nresult = []\n"
        "def work():\n    time.sleep(0.2)\n    result.append(42)\n    assert result == [42]\n"
        "threading.Thread(target=work).start()\n"
    ),
    "an implementation assert its test expects to fail": (
        "def root(x):\n    assert x >= 0, 'negative'\n    return x ** 0.5\n"
        "try:\n    root(-1)\n    raise RuntimeError('no error for -1')\nexcept AssertionError:\n    pass\n"
        "assert root(4) == 2\n"
    ),
}


@pytest.mark.parametrize("program", list(CORRECT))
def test_correct_programs_are_not_failed_by_the_harness(program: str) -> None:
    token = new_token()
    # Where the tests start: an implementation's own asserts are not the tests'.
    first_test_line = 4 + HEADER_LINES if program.startswith("an implementation assert") else 1
    outcome = run_hostile(CORRECT[program], token, tests_from_line=first_test_line)
    assert outcome.status == "pass", outcome
    assert_none_survive(token)
