"""The sandbox's first program: it runs inside the isolation, sets the limits, drops to the
run's uid, then runs the generated program as `python program.py` would.

Not imported by the project: the runner reads this file as text (importlib.resources),
compiles it once and runs it as `python -s -B -P -c <bootstrap> harness_fd token_fd
report_fd program_fd marker_fd handback_fd uid adopt cpu memory processes file_size
open_files workdir tests_from_line keep disk` (keep: the names to hand back, joined by
'/'; see levels.BOOTSTRAP). It depends on the standard library only.

Two processes, both first leaving the runner's kernel session keyring for a new, empty
one (credentials of the executor's service or of Kerberos live there):
- the supervisor (the first one) reaps the program's process with wait4 and reports its
  exact wait status and CPU seconds on report_fd (bwrap and unshare only pass on an exit
  code). At process level (adopt=1) it is a child subreaper, and as root it then kills
  whatever the program's uid left running. As root it keeps uid 0, out of the program's
  reach; it is never dumpable, so a program of the same uid (a user namespace) cannot
  open its descriptors through /proc either. With files to hand back (handback_fd >= 0,
  bwrap levels only, where the pid namespace holds nothing but the run) it then kills
  every other process of the namespace, drops to the run's uid and copies each kept
  file that is a plain regular file (flat name, no link, one hard link) into handback_fd:
  `name NUL size LF bytes`, at most the run's disk in all.
- the program's process reads the completion token and the program text from their
  descriptors and closes both, drops to the run's uid (as root), sets the rlimits,
  writes b"1" to report_fd and closes it, writes program.py, and runs it as module
  __main__. Only if the program ends normally, and no test of it failed on the way, does
  it write the token to marker_fd, a pipe of its own that no exec'd program inherits, so
  where fd 1 points and how much the program printed never hide the marker.

Handed in compiled, its size costs no compile per run; syntax trees are _ast's and C
calls go through _ctypes, so neither ast nor ctypes is imported per program.

A normal end is: the module's code returns; or it raises SystemExit with code 0 (or
None/False) from its last top-level statement (the last statement of a trailing
`if __name__ == "__main__":` block counts as the last), as a final `sys.exit(0)` does,
or from unittest's own `unittest.main()` once it ran tests and nothing after it tests
anything (no assert, TestCase, test_ function, unittest.main() or call of a function
that asserts). Never a SystemExit raised before the tests start (the implementation's
own main block). Then, as plain Python does at its exit, threads that are not daemons
are waited for and atexit functions run (multiprocessing joins its children there);
unittest tests the program defined but never ran are run here (a program may define
TestCases and never run them); any failure, error or none run at all is a fail.
SystemExit anywhere else, os._exit, a signal or an exception is not a normal end, so no
token is written. With files to hand back, every open file is flushed first.

A test that failed is a fail even when the program went on: every `assert` from line
tests_from_line on (the tests; the implementation above them may use asserts it expects
to fail) is rewritten to count a false condition in a record shared with forked
children before raising as usual; an assertRaises that expected the AssertionError
takes it back. unittest's TestResult and doctest's runner report every failure and
error. So a failed assert caught by `except AssertionError: print("Test failed")`,
masked by `finally: sys.exit(0)`, raised in a thread, a process or a future nobody
waits for, a unittest run whose result is ignored (`exit=False`) or an ignored
`doctest.testmod()` fails the run.

Where the token is: only in a closure cell of `finish`, created before the program runs
(its descriptor is closed and was never inherited past exec: no fd, file, argument or
environment variable holds it). What program code can still do, being the same
process: walk the interpreter's objects (gc.get_referents of that closure, the frames
of this harness) or read its own memory with ctypes or /proc/self/mem, and reset the
failure record the same ways or through the assert hook's closure. Such code is written
against this harness in particular and could as well have written tests that test
nothing; tests/security checks that the generic ways (scanning /proc/self/fd, frame
locals, an exec'd interpreter) find nothing.
"""

from __future__ import annotations

import _ast
import builtins
import os
import resource
import sys
import types

# typing, contextlib, ast and ctypes cost milliseconds to import, paid by every program:
# the annotations are only for the type checker, syntax trees are _ast's (what compile()
# makes), and C functions are called through _ctypes.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from importlib.machinery import ModuleSpec
    from typing import NoReturn

PROGRAM_NAME = "program.py"
ASSERT_HOOK = "__selfalign_assert__"  # the builtin a rewritten assert calls
# keyctl(2) per machine (the generic table's number on arm64 and riscv64).
_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219}
_KEYCTL_GET_KEYRING_ID, _KEYCTL_JOIN_SESSION_KEYRING, _SESSION_KEYRING = 0, 1, -3
_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 4, 36
# The failure record shared with forked children (an anonymous shared mmap): failed test
# asserts not expected by an assertRaises, as a 4-byte count, then one byte set when
# unittest or doctest reported a failure.
_ASSERTS, _REPORTED, _RECORD_SIZE = slice(0, 4), 4, 5
_ONLY_AST = 0x400  # compile(): return the syntax tree (ast.PyCF_ONLY_AST)


# --- the process's own state -----------------------------------------------------------

def libc_call(name: str, *args: int) -> int:
    """Call a libc function of int arguments (0 for NULL); its int result."""
    try:
        import _ctypes

        return _ctypes.call_function(_ctypes.dlsym(_ctypes.dlopen(None), name), args)  # type: ignore[attr-defined]
    except AttributeError:  # an interpreter without those private helpers
        import ctypes

        return getattr(ctypes.CDLL(None), name)(*args)


def leave_session_keyring() -> None:
    """Join a new, empty session keyring, or stop if the runner's could still be reached."""
    number = _KEYCTL.get(os.uname().machine)
    if number is None:
        sys.stderr.write(f"sandbox: no keyctl number known for {os.uname().machine}: "
                         "cannot leave the runner's session keyring\n")
        os._exit(125)
    if libc_call("syscall", number, _KEYCTL_JOIN_SESSION_KEYRING, 0) >= 0:
        return
    # Where keyctl is denied altogether (Docker's default seccomp profile), it is denied
    # to the program too: nothing to protect then. Anything else is a refusal to run.
    if libc_call("syscall", number, _KEYCTL_GET_KEYRING_ID, _SESSION_KEYRING, 0) >= 0:
        sys.stderr.write("sandbox: cannot leave the runner's session keyring\n")
        os._exit(125)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` from a child that takes that uid (kill(-1) spares it)."""
    if os.fork() == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, 9)
        finally:
            os._exit(0)


def drop_to(uid: int) -> None:
    if uid >= 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


# --- the supervisor --------------------------------------------------------------------

def hand_back(handback_fd: int, directory: str, names: list[str], budget: int) -> None:
    """Copy each named plain file of `directory` into handback_fd, `budget` bytes at most,
    in the kernel (sendfile): the run's memory holds no second copy while it hands back."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for name in names:
        try:
            fd = os.open(os.path.join(directory, name), flags)
        except OSError:
            continue  # missing, a link (ELOOP) or unreadable
        try:
            info = os.fstat(fd)
            size = info.st_size
            if (info.st_mode & 0o170000) != 0o100000 or info.st_nlink != 1 or size > budget:
                continue
            start = os.lseek(handback_fd, 0, os.SEEK_CUR)
            os.write(handback_fd, name.encode() + b"\0" + str(size).encode() + b"\n")
            sent = 0
            while sent < size and (step := os.sendfile(handback_fd, fd, sent, size - sent)):
                sent += step
            if sent != size:  # it shrank meanwhile: leave no broken record behind
                os.ftruncate(handback_fd, start)
                os.lseek(handback_fd, start, os.SEEK_SET)
                continue
            budget -= size
        finally:
            os.close(fd)


def supervise(child: int, report_fd: int, uid: int, adopt: bool, handback: tuple[int, str, list[str], int]) -> NoReturn:
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == child:
            break
    cpu = usage.ru_utime + usage.ru_stime
    os.write(report_fd, f"{status} {cpu:.3f}\n".encode())
    if adopt and uid >= 0:
        kill_uid(uid)
    handback_fd, directory, names, budget = handback
    if handback_fd >= 0:
        # As the run's uid (root here has no CAP_KILL), in a pid namespace holding the
        # run alone: every process of it but this one and the namespace's init.
        drop_to(uid)
        try:  # noqa: SIM105 - contextlib would be one more import per program
            os.kill(-1, 9)
        except ProcessLookupError:
            pass  # nothing else was left
        hand_back(handback_fd, directory, names, budget)
        os.close(handback_fd)
    try:
        while os.waitpid(-1, 0 if adopt and uid >= 0 else os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


# --- the program's process ---------------------------------------------------------------

def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def set_limits(cpu: int, memory: int, processes: int, file_size: int, open_files: int) -> None:
    """Set each rlimit, never above the hard limit this process already has."""
    for which, soft, hard in (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_NPROC, processes, processes),
        (resource.RLIMIT_FSIZE, file_size, file_size),
        (resource.RLIMIT_NOFILE, open_files, open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        current = resource.getrlimit(which)[1]
        if current != resource.RLIM_INFINITY:
            hard, soft = min(hard, current), min(soft, current)
        resource.setrlimit(which, (soft, hard))


class Failures:
    """The failure record of a run (see _ASSERTS): kept in shared memory, so what a forked
    child noted counts too."""

    def __init__(self) -> None:
        import mmap

        self.record = mmap.mmap(-1, _RECORD_SIZE)

    def asserts(self) -> int:
        return int.from_bytes(self.record[_ASSERTS], "little")

    def add_assert(self, delta: int) -> None:
        count = max(0, self.asserts() + delta)
        self.record[_ASSERTS] = count.to_bytes(4, "little")

    def report(self) -> None:
        self.record[_REPORTED] = 1

    def why(self) -> str | None:
        if self.asserts():
            return "an assert of the tests failed"
        if self.record[_REPORTED]:
            return "unittest or doctest reported a failure or an error"
        return None


def _flush(streams: Sequence[object]) -> None:
    for stream in streams:
        try:  # noqa: SIM105 - contextlib would be one more import per program
            stream.flush()  # type: ignore[attr-defined]
        except Exception:
            pass


def end_as_python_would() -> None:
    """What the interpreter does at a normal exit before it stops: wait for the threads
    that are not daemons, then run the atexit functions (multiprocessing joins its
    children there). A test failing in any of them still counts."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:  # noqa: SIM105
            threading._shutdown()  # type: ignore[attr-defined]
        except Exception:
            pass
    import atexit

    atexit._run_exitfuncs()


def flush_open_files() -> None:
    """Flush every open file object: its data must be whole in the files handed back,
    as the interpreter's own finalization would leave it."""
    import gc
    import io

    _flush([obj for obj in gc.get_objects() if isinstance(obj, io.IOBase) and not obj.closed])


def make_finisher(marker: bytes, marker_fd: int, failures: Failures,
                  hands_back: bool) -> Callable[[], NoReturn]:
    write, leave = os.write, os._exit
    streams = (sys.stdout, sys.stderr)

    def finish() -> NoReturn:
        end_as_python_would()
        _flush([*streams, sys.stdout, sys.stderr])
        why = failures.why()
        if why:
            write(2, f"sandbox: {why}, and the program went on (caught, in another thread "
                     "or process, or masked by an exit)\n".encode())
            leave(1)
        if hands_back:
            flush_open_files()
        try:
            write(marker_fd, marker)
        except OSError:
            write(2, b"sandbox: the program closed the harness's completion channel\n")
            leave(1)
        leave(0)

    return finish


def fail_now() -> NoReturn:
    """Exit 1 as an uncaught exception would, with what the program printed flushed."""
    _flush([sys.stdout, sys.stderr])
    os._exit(1)


# --- noting failed tests ------------------------------------------------------------------

def install_assert_hook(watch: TestWatch) -> None:
    failed = watch.failed_assert

    def checked(value: object) -> bool:
        if value:
            return True
        failed()
        return False

    setattr(builtins, ASSERT_HOOK, checked)


def walk(tree: _ast.AST) -> Iterator[_ast.AST]:
    """Every node of a syntax tree (ast.walk, without importing ast)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                stack.extend(item for item in value if isinstance(item, _ast.AST))
            elif isinstance(value, _ast.AST):
                stack.append(value)


def parse(source: bytes, path: str = "<unknown>") -> _ast.Module:
    tree = compile(source, path, "exec", _ONLY_AST)
    assert isinstance(tree, _ast.Module)
    return tree


def rewrite_asserts(tree: _ast.Module, first_line: int) -> None:
    """`assert test, msg` from first_line on becomes `assert HOOK(test), msg`: the test is
    evaluated once, msg only on failure, and the traceback still shows the line."""
    for node in walk(tree):
        if isinstance(node, _ast.Assert) and node.lineno >= first_line:
            test = node.test
            where = {key: getattr(test, key) for key in ("lineno", "col_offset", "end_lineno", "end_col_offset")}
            hook = _ast.Name(id=ASSERT_HOOK, ctx=_ast.Load(), **where)
            node.test = _ast.Call(func=hook, args=[test], keywords=[], **where)


class TestWatch:
    """Patches unittest and doctest as the program first imports them: every test run is
    noted, every failure and error reported, whoever ran the test and whatever became of
    the result; an AssertionError an assertRaises expected takes back the failed test
    assert that raised it."""

    MODULES = ("unittest.result", "unittest.case", "doctest")

    def __init__(self, failures: Failures) -> None:
        self.failures = failures
        self.ran: set[str] = set()
        self.pending = set(self.MODULES)
        self.failed_in: list[types.CodeType] = []  # code of each failed test assert counted

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> ModuleSpec | None:
        if name not in self.pending:
            return None
        self.pending.discard(name)
        if not self.pending:
            sys.meta_path.remove(self)
        finder = next(f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder")
        spec = finder.find_spec(name, path, target)  # type: ignore[attr-defined]
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, self)  # type: ignore[assignment]
        return spec

    def patch(self, module: types.ModuleType) -> None:
        if module.__name__ == "unittest.result":
            self.patch_results(module.TestResult)
        elif module.__name__ == "unittest.case":
            self.patch_assert_raises(module._AssertRaisesContext)
        else:
            self.patch_doctest(module.DocTestRunner)

    def failed_assert(self) -> None:
        self.failures.add_assert(1)
        self.failed_in.append(sys._getframe(2).f_code)

    def patch_results(self, result_class: type) -> None:
        report, ran = self.failures.report, self.ran
        start, failure, error = result_class.startTest, result_class.addFailure, result_class.addError
        sub_test, unexpected = result_class.addSubTest, result_class.addUnexpectedSuccess

        def startTest(self: object, test: object) -> None:
            ran.add(test.id())  # type: ignore[attr-defined]
            start(self, test)

        def addFailure(self: object, test: object, err: object) -> None:
            report()
            failure(self, test, err)

        def addError(self: object, test: object, err: object) -> None:
            report()
            error(self, test, err)

        def addSubTest(self: object, test: object, subtest: object, err: object) -> None:
            if err is not None:
                report()
            sub_test(self, test, subtest, err)

        def addUnexpectedSuccess(self: object, test: object) -> None:
            report()
            unexpected(self, test)

        for patched in (startTest, addFailure, addError, addSubTest, addUnexpectedSuccess):
            setattr(result_class, patched.__name__, patched)

    def patch_assert_raises(self, context_class: type) -> None:
        exit_, watch = context_class.__exit__, self

        def __exit__(self: object, exc_type: type | None, exc_value: object, tb: types.TracebackType | None) -> bool:
            swallowed = exit_(self, exc_type, exc_value, tb)
            if swallowed and exc_type is not None and issubclass(exc_type, AssertionError):
                while tb is not None and tb.tb_next is not None:
                    tb = tb.tb_next
                if tb is not None and tb.tb_frame.f_code in watch.failed_in:
                    watch.failed_in.remove(tb.tb_frame.f_code)
                    watch.failures.add_assert(-1)  # the failure was the test's expectation
            return swallowed

        context_class.__exit__ = __exit__  # type: ignore[method-assign]

    def patch_doctest(self, runner_class: type) -> None:
        report = self.failures.report
        failure, unexpected = runner_class.report_failure, runner_class.report_unexpected_exception

        def report_failure(self: object, *args: object) -> None:
            report()
            failure(self, *args)

        def report_unexpected_exception(self: object, *args: object) -> None:
            report()
            unexpected(self, *args)

        runner_class.report_failure = report_failure  # type: ignore[method-assign]
        runner_class.report_unexpected_exception = report_unexpected_exception  # type: ignore[method-assign]


class _PatchingLoader:
    def __init__(self, loader: object, watch: TestWatch) -> None:
        self.loader, self.watch = loader, watch

    def create_module(self, spec: object) -> object:
        return self.loader.create_module(spec)  # type: ignore[attr-defined]

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)  # type: ignore[attr-defined]
        self.watch.patch(module)


# --- which end is a normal end ----------------------------------------------------------------

def _is_main_guard(node: _ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, _ast.If) and isinstance(test, _ast.Compare)
        and isinstance(test.left, _ast.Name) and test.left.id == "__name__"
        and len(test.comparators) == 1 and isinstance(test.comparators[0], _ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _top_statements(source: bytes) -> list[_ast.stmt]:
    """The program's top-level statements, a trailing main guard's body in its place."""
    try:
        body = parse(source).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    last = body[-1] if body else None
    if isinstance(last, _ast.If) and _is_main_guard(last) and not last.orelse:
        return body[:-1] + last.body
    return body


def last_statement_lines(source: bytes) -> tuple[int, int]:
    """First and last line of the program's last statement ((0, 0) if it has none)."""
    body = _top_statements(source)
    if not body:
        return 0, 0
    last = body[-1]
    return last.lineno, last.end_lineno or last.lineno


def _raised_at(exc: BaseException, path: str) -> int | None:
    """The line of the program's module code the exception went through."""
    trace = exc.__traceback__
    while trace is not None:
        code = trace.tb_frame.f_code
        if code.co_name == "<module>" and code.co_filename == path:
            return trace.tb_lineno
        trace = trace.tb_next
    return None


def _from_unittest_main(exc: SystemExit) -> bool:
    """Whether unittest's own TestProgram raised it (not code that only says it is)."""
    module = sys.modules.get("unittest.main")
    trace = exc.__traceback__
    while module is not None and trace is not None:
        if trace.tb_frame.f_globals is vars(module):
            return True
        trace = trace.tb_next
    return False


def _is_test_case(node: _ast.ClassDef) -> bool:
    return any((isinstance(base, _ast.Name) and base.id.endswith("TestCase"))
               or (isinstance(base, _ast.Attribute) and base.attr.endswith("TestCase"))
               for base in node.bases)


def tests_after(source: bytes, line: int, tests_from_line: int = 1) -> bool:
    """Whether a top-level statement after `line` tests anything: asserts, defines a
    TestCase or a test_ function, runs unittest.main(), or calls a function of the
    tests that asserts."""
    body = _top_statements(source)
    asserting = {
        node.name for node in body
        if isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef))
        and any(isinstance(inner, _ast.Assert) and inner.lineno >= tests_from_line
                for inner in walk(node))
    }
    for statement in body:
        if statement.lineno <= line:
            continue
        for node in walk(statement):
            if isinstance(node, _ast.Assert):
                return True
            if isinstance(node, _ast.ClassDef) and _is_test_case(node):
                return True
            if isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef)) and node.name.startswith("test"):
                return True
            if isinstance(node, _ast.Call):
                func = node.func
                if isinstance(func, _ast.Name) and func.id in asserting:
                    return True
                if isinstance(func, _ast.Attribute) and func.attr == "main" \
                        and isinstance(func.value, _ast.Name) and func.value.id == "unittest":
                    return True
    return False


def _success(code: object) -> bool:
    """A SystemExit code plain Python exits 0 for."""
    return code is None or (type(code) in (int, bool) and code == 0)


def exit_is_normal_end(exc: SystemExit, path: str, source: bytes, tests_from_line: int = 1,
                       ran: set[str] | None = None) -> bool:
    """A SystemExit with a success code from the program's last statement, or from
    unittest.main() once it ran tests and nothing after it tests; never one raised
    before the tests start (from the implementation's own main block)."""
    if not _success(exc.code):
        return False
    line = _raised_at(exc, path)
    if line is None or line < tests_from_line:
        return False
    first, last = last_statement_lines(source)
    if first <= line <= last:
        return True
    return (_from_unittest_main(exc) and bool(ran)
            and not tests_after(source, line, tests_from_line))


def run_test_cases(main: types.ModuleType, ran: set[str]) -> bool:
    """Run the unittest tests the program defined and never ran; True when all passed
    (or there were none)."""
    unittest = sys.modules.get("unittest")
    if unittest is None:  # the program never imported it, so it defined none
        return True
    cases = [value for value in list(vars(main).values())
             if isinstance(value, type) and issubclass(value, unittest.TestCase)
             and value.__module__ == "__main__"]
    if not cases:
        return True
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(test for case in cases for test in loader.loadTestsFromTestCase(case)
                               if test.id() not in ran)
    if suite.countTestCases() == 0 and ran:
        return True  # the program ran every one of them itself (their outcome is flagged)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)
    if result.testsRun == 0:
        sys.stderr.write("sandbox: the program's TestCases hold no test\n")
    return bool(result.wasSuccessful() and result.testsRun > 0)


def compiled(source: bytes, path: str, tests_from_line: int) -> types.CodeType:
    if b"assert" not in source:
        return compile(source, path, "exec")
    try:
        tree = parse(source, path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return compile(source, path, "exec")  # raises as plain Python would
    rewrite_asserts(tree, tests_from_line)
    return compile(tree, path, "exec")


def run_program(source: bytes, path: str, finish: Callable[[], NoReturn], tests_from_line: int,
                watch: TestWatch) -> NoReturn:
    sys.argv = [path]
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    try:
        exec(compiled(source, path, tests_from_line), main.__dict__)
    except SystemExit as exc:
        if not exit_is_normal_end(exc, path, source, tests_from_line, watch.ran):
            raise
    except BaseException as exc:
        # The traceback from the program's own frames on (this harness's are noise in
        # every failed run's output), then exit 1 like an uncaught exception would.
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        fail_now()
    if not run_test_cases(main, watch.ran):
        fail_now()
    finish()


def run(argv: list[str]) -> None:
    token_fd, report_fd, program_fd, marker_fd, handback_fd, uid, adopt = (int(v) for v in argv[1:8])
    cpu, memory, processes, file_size, open_files = (int(v) for v in argv[8:13])
    workdir, tests_from_line, keep, disk = argv[13], int(argv[14]), argv[15], int(argv[16])
    leave_session_keyring()
    if adopt:
        libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    source = read_all(program_fd)
    child = os.fork()
    if child:
        os.close(token_fd)
        os.close(marker_fd)
        libc_call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)
        supervise(child, report_fd, uid, bool(adopt),
                  (handback_fd, workdir, keep.split("/") if keep else [], disk))
    if handback_fd >= 0:
        os.close(handback_fd)
    failures = Failures()
    finish = make_finisher(read_all(token_fd), marker_fd, failures, bool(keep))
    os.set_inheritable(marker_fd, False)  # an exec'd program never holds the channel
    drop_to(uid)
    stdlib = os.path.dirname(os.__file__)
    if not os.access(stdlib, os.R_OK | os.X_OK):
        sys.stderr.write(f"sandbox: uid {os.getuid()} cannot read the standard library at {stdlib}\n")
        os._exit(125)
    if workdir != ".":
        os.chdir(workdir)
    os.environ.pop("PWD", None)
    os.umask(0o022)  # files handed back (evaluation's expected outputs) stay readable
    with open(PROGRAM_NAME, "wb") as handle:  # for tracebacks that quote its lines
        handle.write(source)
    set_limits(cpu, memory, processes, file_size, open_files)
    watch = TestWatch(failures)
    install_assert_hook(watch)
    sys.meta_path.insert(0, watch)  # type: ignore[arg-type]
    os.write(report_fd, b"1")
    os.close(report_fd)
    run_program(source, os.path.join(os.getcwd(), PROGRAM_NAME), finish, tests_from_line, watch)


if __name__ == "__main__":
    run(sys.argv)
