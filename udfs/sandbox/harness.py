"""The sandbox's first program: it runs inside the isolation, sets the limits, drops to the
run's uid, then runs the generated program as `python program.py` would.

Not imported by the project: the runner reads this file as text (importlib.resources)
and runs it as `python -s -B -P -c <text> token_fd report_fd program_fd uid adopt cpu
memory processes file_size open_files workdir`. It depends on the standard library only.

Two processes:
- the supervisor (the first one) reaps the program's process with wait4 and reports its
  exact wait status and CPU seconds on report_fd (bwrap and unshare only pass on an exit
  code). As pid 1 of a pid namespace it is the init that reaps orphans; at process
  level (adopt=1) it is a child subreaper, and as root it then kills whatever the
  program's uid left running. As root it keeps uid 0, out of the program's reach.
- the program's process reads the completion token and the program text from their
  descriptors and closes both, drops to the run's uid (as root), sets the rlimits,
  writes b"1" to report_fd and closes it, writes program.py, and runs it as module
  __main__. Only if the program ends normally does it print the token.

A normal end is: the module's code returns; or it raises SystemExit with code 0 (or
None/False) from its last top-level statement (the last statement of a trailing
`if __name__ == "__main__":` block counts as the last), as `unittest.main()` and a final
`sys.exit(0)` do. After a return, unittest TestCases defined by the program are run here
(a program may define them and never run them); any failure, error or none run at all
is a fail. SystemExit anywhere else, os._exit, a signal or an exception is not a
normal end, so no token is printed.

Where the token is: only in a closure cell of `finish`, created before the program runs
(its descriptor is closed and was never inherited past exec: no fd, file, argument or
environment variable holds it). What program code can still do, being the same
process: walk the interpreter's objects (gc.get_referents of that closure) or read its
own memory with ctypes. Such code is written against this harness in particular and
could as well have written tests that test nothing; tests/security checks that the
generic ways (scanning /proc/self/fd, frame locals, an exec'd interpreter) find nothing.
"""

from __future__ import annotations

import builtins
import os
import resource
import sys
import types

# typing, contextlib and ast cost milliseconds to import, paid by every program: the
# annotations are only for the type checker, and ast is needed after a SystemExit only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Callable
    from typing import NoReturn

PROGRAM_NAME = "program.py"


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` from a child that takes that uid (kill(-1) spares it)."""
    if os.fork() == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, 9)
        finally:
            os._exit(0)


def supervise(child: int, report_fd: int, uid: int, adopt: bool) -> NoReturn:
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == child:
            break
    cpu = usage.ru_utime + usage.ru_stime
    os.write(report_fd, f"{status} {cpu:.3f}\n".encode())
    if adopt and uid >= 0:
        kill_uid(uid)
    try:
        while os.waitpid(-1, 0 if adopt and uid >= 0 else os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


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


def make_finisher(marker: bytes) -> Callable[[], NoReturn]:
    write, leave = os.write, os._exit
    flushes = (sys.stdout.flush, sys.stderr.flush)

    def finish() -> NoReturn:
        for flush in flushes:
            try:  # noqa: SIM105 - contextlib would be one more import per program
                flush()
            except Exception:
                pass
        write(1, marker)
        leave(0)

    return finish


def _is_main_guard(node: ast.stmt) -> bool:
    import ast

    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If) and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name) and test.left.id == "__name__"
        and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def last_statement_lines(source: bytes) -> tuple[int, int]:
    """First and last line of the program's last statement ((0, 0) if it has none)."""
    import ast

    try:
        body = ast.parse(source).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0, 0
    if not body:
        return 0, 0
    last = body[-1]
    if _is_main_guard(last) and isinstance(last, ast.If) and last.body and not last.orelse:
        last = last.body[-1]
    return last.lineno, last.end_lineno or last.lineno


def exit_is_normal_end(exc: SystemExit, path: str, last: tuple[int, int]) -> bool:
    """SystemExit with a success code raised from within the program's last statement."""
    if exc.code not in (None, 0):  # False == 0
        return False
    frame_line = None
    trace = exc.__traceback__
    while trace is not None:
        code = trace.tb_frame.f_code
        if code.co_name == "<module>" and code.co_filename == path:
            frame_line = trace.tb_lineno
            break
        trace = trace.tb_next
    return frame_line is not None and last[0] <= frame_line <= last[1]


def run_test_cases(main: types.ModuleType) -> bool:
    """Run the unittest TestCases the program defined; True when there were none or all passed."""
    unittest = sys.modules.get("unittest")
    if unittest is None:  # the program never imported it, so it defined none
        return True
    cases = [value for value in list(vars(main).values())
             if isinstance(value, type) and issubclass(value, unittest.TestCase)
             and value.__module__ == "__main__"]
    if not cases:
        return True
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(case) for case in cases)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)
    if result.testsRun == 0:
        sys.stderr.write("sandbox: the program's TestCases hold no test\n")
    return bool(result.wasSuccessful() and result.testsRun > 0)


def run_program(source: bytes, path: str, finish: Callable[[], NoReturn]) -> NoReturn:
    sys.argv = [path]
    code = compile(source, path, "exec")
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except SystemExit as exc:
        if not exit_is_normal_end(exc, path, last_statement_lines(source)):
            raise
    except BaseException as exc:
        # The traceback from the program's own frames on (this harness's are noise in
        # every failed run's output), then exit 1 like an uncaught exception would.
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        sys.exit(1)
    else:
        if not run_test_cases(main):
            sys.stderr.flush()
            os._exit(1)
    finish()


def run(argv: list[str]) -> None:
    token_fd, report_fd, program_fd, uid, adopt = (int(v) for v in argv[1:6])
    cpu, memory, processes, file_size, open_files = (int(v) for v in argv[6:11])
    workdir = argv[11]
    if adopt:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    source = read_all(program_fd)
    child = os.fork()
    if child:
        os.close(token_fd)
        supervise(child, report_fd, uid, bool(adopt))
    finish = make_finisher(b"\n" + read_all(token_fd) + b"\n")
    if uid >= 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
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
    os.write(report_fd, b"1")
    os.close(report_fd)
    run_program(source, os.path.join(os.getcwd(), PROGRAM_NAME), finish)


if __name__ == "__main__":
    run(sys.argv)
