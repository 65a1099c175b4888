"""Measure how sandbox verdicts change between two versions of the sandbox code.

A change to the verdict rules (udfs/sandbox: the harness, verdict.py) can turn correct
programs into fails or let broken ones pass. This runs one fixed, deterministic set of
programs through `udfs.sandbox.run_program` (default Limits) under each version and
compares the statuses. The set:

- correct: HumanEval+ and MBPP+ reference solutions followed by their own true tests,
  rewritten (with `ast`) into the styles generated responses use: plain asserts, a
  `__main__` guard, a `test_x()` or `check(candidate)` function, unittest TestCases run
  by `unittest.main()` (bare, guarded, `exit=False`, followed by a print), asserts inside
  try/except AssertionError or try/finally sys.exit(0), in a thread or an unread
  ThreadPoolExecutor future, and a final print. Expected: pass.
- wrong: a few tasks whose implementation returns None, in the same styles, tested on
  asserts that compare with a literal, so every style's tests fail; some styles swallow
  the failure (caught, exit 0 in finally, in a thread). Expected: fail under a strict
  verifier.
- dag: what execute runs for the sample DAG: the test-double engines' respond answers
  (tests/fake_engine.py, tests/stage_engine.py), parsed as the respond stage parses them,
  and the respond prompt's worked examples the model imitates. Expected: unknown.

Every program is an implementation, "\\n\\n", then tests, as udfs.parse.program_for joins
them; `tests_from_line` (where the tests start) is passed to run_program only when its
signature has that parameter, so older code runs the same set.

Run (the old version from a git worktree, the new one from this checkout):

    git worktree add /tmp/old <commit>
    .venv/bin/python bench/verdict_change_bench.py run --out /tmp/old.jsonl --code-root /tmp/old
    .venv/bin/python bench/verdict_change_bench.py run --out /tmp/new.jsonl
    .venv/bin/python bench/verdict_change_bench.py compare /tmp/old.jsonl /tmp/new.jsonl
    git worktree remove --force /tmp/old

Benchmarks come from --benchmarks, else where the pipeline looks for them
(SELFALIGN_BENCHMARKS_DIR, else the user's cache, filled by `selfalign benchmarks download`). About 580 programs; under 30 s on 2 cores (bwrap+cgroup).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import subprocess
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HUMANEVAL_FILE = "humanevalplus-v0.1.10.jsonl.gz"
MBPP_FILE = "mbppplus-v0.2.0.jsonl.gz"
WRONG_ASSERTS = 3  # literal comparisons a wrong program is tested on
# Statuses that say something about the program; sandbox-error says the sandbox failed.
FAILED = frozenset({"fail", "timeout", "memory", "crash"})


# --- programs ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Program:
    id: str
    group: str  # correct | wrong | dag
    style: str
    expected: str  # pass | fail | unknown
    text: str
    tests_from_line: int  # 1-based line where the tests start

    @classmethod
    def joined(cls, id: str, group: str, style: str, expected: str, code: str,
               tests: str) -> Program:
        """Code and tests joined as udfs.parse.program_for joins a response's."""
        return cls(id, group, style, expected, f"{code}\n\n{tests}", code.count("\n") + 3)

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    """A reference solution and its tests as assert nodes that call `entry` by name."""

    key: str  # "humaneval/12", "mbpp/6"
    entry: str
    code: str
    setup: tuple[str, ...]  # imports the asserts need
    asserts: tuple[ast.Assert, ...]


def _parse(source: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            # Benchmark code has invalid escapes ("\d" in plain strings): not ours to fix.
            warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
            return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.new, node.ctx) if node.id == self.old else node


def renamed(node: ast.Assert, old: str, new: str) -> ast.Assert:
    copy = _Rename(old, new).visit(ast.parse(ast.unparse(node)).body[0])
    assert isinstance(copy, ast.Assert)
    return copy


def humaneval_task(record: dict[str, Any]) -> Task | None:
    """The task with `check(candidate)`'s asserts calling the entry point; None unless
    check holds asserts only (loops and helpers do not convert to every style)."""
    module = _parse(record["test"])
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"] \
        if module else []
    if len(checks) != 1 or not all(isinstance(s, ast.Assert) for s in checks[0].body):
        return None
    entry = record["entry_point"]
    asserts = tuple(renamed(s, "candidate", entry) for s in checks[0].body
                    if isinstance(s, ast.Assert))
    code = (record["prompt"] + record["canonical_solution"]).strip("\n").rstrip()
    number = record["task_id"].split("/")[-1]
    return Task(f"humaneval/{number}", entry, code, (), asserts) if asserts else None


def mbpp_task(record: dict[str, Any]) -> Task | None:
    """The task with its `assertion` text split into imports and asserts; None otherwise."""
    module = _parse(record["assertion"])
    if module is None or not all(isinstance(s, (ast.Import, ast.ImportFrom, ast.Assert))
                                 for s in module.body):
        return None
    setup = tuple(ast.unparse(s) for s in module.body if not isinstance(s, ast.Assert))
    asserts = tuple(s for s in module.body if isinstance(s, ast.Assert))
    code = record["canonical_solution"].strip("\n").rstrip()
    number = record["task_id"].split("/")[-1]
    return Task(f"mbpp/{number}", record["entry_point"], code, setup, asserts) if asserts else None


def load_tasks(benchmarks: Path, name: str, convert: Callable[[dict[str, Any]], Task | None]
               ) -> tuple[list[Task], int]:
    """Every task of one file that converts, and how many did not."""
    from udfs.benchmarks import read_jsonl

    tasks, skipped = [], 0
    for record in read_jsonl(benchmarks / name, name):
        task = convert(record)
        if task is None:
            skipped += 1
        else:
            tasks.append(task)
    return tasks, skipped


def spread(items: Sequence[Task], n: int) -> list[Task]:
    """n items evenly spaced over the list: easy and hard tasks, not the first n."""
    if n >= len(items):
        return list(items)
    return [items[k * len(items) // n] for k in range(n)]


# --- test styles: how generated responses wrap the same asserts --------------------------

@dataclass(frozen=True)
class Suite:
    entry: str
    setup: tuple[str, ...]
    asserts: tuple[ast.Assert, ...]
    taken: frozenset[str]  # top-level names the code defines: wrappers must not clash

    def free(self, name: str) -> str:
        return name if name not in self.taken else f"{name}_{self.entry}"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _sections(*parts: str) -> str:
    return "\n\n\n".join(part for part in parts if part)


def _asserts(suite: Suite) -> str:
    return "\n".join(ast.unparse(a) for a in suite.asserts)


def _imports(suite: Suite, *extra: str) -> str:
    return "\n".join([*extra, *suite.setup])


def _unittest_call(node: ast.Assert) -> str:
    """self.assertEqual for `a == b`, assertFalse for `not x`, else assertTrue."""
    test, message = node.test, [node.msg] if node.msg else []
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        method, args = "assertEqual", [test.left, test.comparators[0], *message]
    elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        method, args = "assertFalse", [test.operand, *message]
    else:
        method, args = "assertTrue", [test, *message]
    call = ast.Call(ast.Attribute(ast.Name("self", ast.Load()), method, ast.Load()), args, [])
    return ast.unparse(call)


def _test_case(suite: Suite) -> str:
    name = "Test" + "".join(part[:1].upper() + part[1:] for part in suite.entry.split("_"))
    body = "\n".join(_unittest_call(a) for a in suite.asserts)
    case = f"class {suite.free(name)}(unittest.TestCase):\n    def test_{suite.entry}(self):\n" \
        + _indent(body, "        ")
    return _sections(_imports(suite, "import unittest"), case)


def _example_call(suite: Suite) -> str:
    """The first call of the entry point in the tests, as a generated demo would print."""
    for node in suite.asserts:
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                    and call.func.id == suite.entry:
                return ast.unparse(call)
    return f"{suite.entry}.__name__"


def _target(suite: Suite, prefix: str) -> tuple[str, str]:
    name = suite.free(f"{prefix}_{suite.entry}")
    return name, f"def {name}():\n{_indent(_asserts(suite))}"


def plain_asserts(suite: Suite) -> str:
    return _sections(_imports(suite), _asserts(suite))


def main_guard(suite: Suite) -> str:
    return _sections(_imports(suite), f'if __name__ == "__main__":\n{_indent(_asserts(suite))}')


def test_function(suite: Suite) -> str:
    name, function = _target(suite, "test")
    return _sections(_imports(suite), function, f"{name}()")


def check_function(suite: Suite) -> str:
    name = suite.free("check")
    body = "\n".join(ast.unparse(renamed(a, suite.entry, "candidate")) for a in suite.asserts)
    return _sections(_imports(suite), f"def {name}(candidate):\n{_indent(body)}",
                     f"{name}({suite.entry})")


def unittest_main(suite: Suite) -> str:
    return _sections(_test_case(suite), "unittest.main()")


def unittest_main_guard(suite: Suite) -> str:
    return _sections(_test_case(suite), 'if __name__ == "__main__":\n    unittest.main()')


def unittest_exit_false(suite: Suite) -> str:
    return _sections(_test_case(suite), "unittest.main(argv=['first-arg-is-ignored'], exit=False)")


def unittest_then_print(suite: Suite) -> str:
    return _sections(_test_case(suite), f"unittest.main()\nprint({_example_call(suite)})")


def try_except_print(suite: Suite) -> str:
    body = _indent(_asserts(suite) + '\nprint("All tests passed")')
    return _sections(_imports(suite),
                     f'try:\n{body}\nexcept AssertionError:\n    print("Test failed")')


def all_passed_print(suite: Suite) -> str:
    return _sections(_imports(suite), _asserts(suite) + '\nprint("All tests passed")')


def try_finally_exit(suite: Suite) -> str:
    return _sections(_imports(suite, "import sys"),
                     f"try:\n{_indent(_asserts(suite))}\nfinally:\n    sys.exit(0)")


def _thread(prefix: str) -> Callable[[Suite], str]:
    def render(suite: Suite) -> str:
        name, function = _target(suite, prefix)
        run = f"worker = threading.Thread(target={name})\nworker.start()\nworker.join()"
        return _sections(_imports(suite, "import threading"), function, run)

    return render


def executor_unread(suite: Suite) -> str:
    name, function = _target(suite, "test")
    run = f"with ThreadPoolExecutor(max_workers=2) as pool:\n    pool.submit({name})"
    return _sections(_imports(suite, "from concurrent.futures import ThreadPoolExecutor"),
                     function, run)


STYLES: dict[str, Callable[[Suite], str]] = {
    "plain_asserts": plain_asserts,
    "main_guard": main_guard,
    "test_function": test_function,
    "check_function": check_function,
    "unittest_main": unittest_main,
    "unittest_main_guard": unittest_main_guard,
    "unittest_exit_false": unittest_exit_false,
    "unittest_then_print": unittest_then_print,
    "try_except_print": try_except_print,
    "all_passed_print": all_passed_print,
    "try_finally_exit": try_finally_exit,
    "thread_test": _thread("test"),
    "thread_check": _thread("check"),
    "executor_unread": executor_unread,
}


def defined_names(code: str) -> frozenset[str]:
    module = _parse(code)
    if module is None:
        return frozenset()
    return frozenset(n.name for n in module.body
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def correct_programs(tasks: Sequence[Task], per_task: int) -> list[Program]:
    """Each task in `per_task` styles, rotating so every style gets a share of tasks."""
    names = list(STYLES)
    programs = []
    for index, task in enumerate(tasks):
        suite = Suite(task.entry, task.setup, task.asserts, defined_names(task.code))
        for offset in range(per_task):
            style = names[(index * per_task + offset) % len(names)]
            programs.append(Program.joined(f"{task.key}/{style}", "correct", style, "pass",
                                           task.code, STYLES[style](suite)))
    return programs


# --- wrong programs ---------------------------------------------------------------------

def _literal_check(node: ast.Assert, entry: str) -> bool:
    """`entry(...) == literal` with a literal other than None: returning None fails it."""
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq) and isinstance(test.left, ast.Call)
            and isinstance(test.left.func, ast.Name) and test.left.func.id == entry):
        return False
    try:
        return ast.literal_eval(test.comparators[0]) is not None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def wrong_code(task: Task) -> str | None:
    """The reference's imports and the entry point's signature, returning None."""
    module = _parse(task.code)
    if module is None:
        return None
    defs = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == task.entry]
    if not defs:
        return None
    imports = [ast.unparse(n) for n in module.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    stub = f"def {task.entry}({ast.unparse(defs[-1].args)}):\n    return None"
    return "\n".join(imports) + "\n\n\n" + stub if imports else stub


def wrong_task(task: Task) -> Task | None:
    checks = tuple(a for a in task.asserts if _literal_check(a, task.entry))[:WRONG_ASSERTS]
    code = wrong_code(task)
    if not checks or code is None:
        return None
    return Task(task.key, task.entry, code, task.setup, checks)


def wrong_programs(tasks: Iterable[Task], count: int) -> list[Program]:
    """The first `count` tasks that make a wrong program, in every style."""
    programs: list[Program] = []
    made = 0
    for task in tasks:
        wrong = wrong_task(task) if made < count else None
        if wrong is None:
            continue
        made += 1
        suite = Suite(wrong.entry, wrong.setup, wrong.asserts, defined_names(wrong.code))
        programs.extend(Program.joined(f"{wrong.key}/wrong/{style}", "wrong", style, "fail",
                                       wrong.code, render(suite))
                        for style, render in STYLES.items())
    return programs


# --- the sample DAG's responses ---------------------------------------------------------

# Instructions like the sample DAG's (tests/stage_engine.py writes them from concepts), and
# the planted ones that change its respond answer.
DAG_INSTRUCTIONS = (
    "Write a function `double(x)` that returns twice its argument, for any number "
    "(concepts: arithmetic, function definition, clamp). ",
    "Write a function `double(x)` that returns twice its argument, for any number "
    "(concepts: arithmetic, function definition, scale_0). ",
    "Write a function `double(x)` that returns twice its argument, for any number "
    "(concepts: arithmetic, function definition, no_tests_please). no_tests_please",
    "Write a function `double(x)` that returns twice its argument, for any number "
    "(concepts: arithmetic, function definition, endless_answer). endless_answer",
)


def _from_response(text: str, finish_reason: str) -> tuple[str, str] | None:
    """(program, tests) execute would run for one answer; None where it runs nothing."""
    from udfs.parse import parse_response, program_for

    parsed = parse_response(text)
    if finish_reason == "length" or not parsed.runnable:
        return None
    return program_for(parsed), parsed.tests


def _dag_program(id: str, style: str, program: str, tests: str) -> Program:
    start = len(program) - len(tests) if program.endswith(tests) else 0
    return Program(id, "dag", style, "unknown", program, program[:start].count("\n") + 1)


def engine_programs(notes: list[str]) -> list[Program]:
    """The distinct programs from each test-double engine's respond answers."""
    from jobs.core.config import load_config
    from tests.fake_engine import INSTRUCT_TEXT, FakeEngine
    from tests.stage_engine import StageEngine
    from udfs.llm import SamplingParams
    from udfs.prompts import load_prompts, respond_prompt, stop_sequences

    cfg = load_config(None, []).generation.respond
    params = SamplingParams(n=2, temperature=cfg.temperature, top_p=cfg.top_p,
                            max_tokens=cfg.max_tokens, stop=tuple(stop_sequences("respond")))
    prompts_cfg = load_prompts()
    instructions = (INSTRUCT_TEXT, *DAG_INSTRUCTIONS)
    prompts = [respond_prompt(text, prompts_cfg, hashlib.sha256(text.encode()).hexdigest())
               for text in instructions]
    programs: dict[str, Program] = {}
    for label, engine in (("fake_engine", FakeEngine()), ("stage_engine", StageEngine())):
        answers = [c for g in engine.generate(prompts, params) for c in g.completions]
        made = [_from_response(c.text, c.finish_reason) for c in answers]
        runnable = [m for m in made if m is not None]
        for program, tests in runnable:
            sha = hashlib.sha256(program.encode()).hexdigest()[:8]
            programs.setdefault(program, _dag_program(f"dag/{label}/{sha}", label, program, tests))
        notes.append(f"{label}: {len(answers)} answers, {len({c.text for c in answers})} distinct "
                     f"texts, {len(runnable)} runnable, "
                     f"{len({p for p, _ in runnable})} distinct programs")
    return list(programs.values())


def example_programs(notes: list[str]) -> list[Program]:
    """The respond prompt's worked examples: the shape the model is shown."""
    from udfs.prompts import load_prompts

    programs = []
    for number, example in enumerate(load_prompts().respond.examples):
        made = _from_response(example.response, "stop")
        if made is not None:
            programs.append(_dag_program(f"dag/example/{number}", "prompt_example", *made))
    notes.append(f"prompt examples: {len(programs)} runnable")
    return programs


# --- building the set -------------------------------------------------------------------

def build_programs(benchmarks: Path, tasks: int, styles: int, wrong: int
                   ) -> tuple[list[Program], list[str]]:
    """All programs, and notes on what was skipped and why."""
    notes: list[str] = []
    programs: list[Program] = []
    for name, convert in ((HUMANEVAL_FILE, humaneval_task), (MBPP_FILE, mbpp_task)):
        converted, skipped = load_tasks(benchmarks, name, convert)
        picked = spread(converted, tasks)
        notes.append(f"{name}: {len(converted)} tasks converted, {skipped} skipped "
                     f"(tests not plain asserts), {len(picked)} used")
        programs += correct_programs(picked, styles)
        programs += wrong_programs(picked, wrong)
    programs += engine_programs(notes)
    programs += example_programs(notes)
    return programs, notes


# --- run --------------------------------------------------------------------------------

def use_code_root(root: Path) -> str:
    """Put `root` first on sys.path before anything imports udfs; its commit, in words."""
    if "udfs" in sys.modules:
        raise RuntimeError("udfs was imported before the code root was chosen")
    sys.path.insert(0, str(root))
    import udfs

    if not Path(udfs.__file__ or "").resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"udfs came from {udfs.__file__}, not from {root}")
    done = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "not a git checkout"


def _last_line(text: str) -> str:
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")


def run_all(programs: Sequence[Program], workers: int) -> Iterator[dict[str, Any]]:
    """One result row per program, in the programs' order."""
    from udfs.sandbox import Limits, choose_isolation, run_program

    level, refusal = choose_isolation("auto", False, None)
    if refusal is not None:
        # Every run would be a sandbox-error: a file of those compares as all changed.
        raise SystemExit(f"the sandbox of this code root runs nothing here: {refusal}")
    limits = Limits()
    # Older sandbox code has no tests_from_line: the same set must still run there.
    with_line = "tests_from_line" in inspect.signature(run_program).parameters
    print(f"isolation {level}; run_program gets tests_from_line: {with_line}")

    def one(program: Program) -> dict[str, Any]:
        extra: dict[str, Any] = {"tests_from_line": program.tests_from_line} if with_line else {}
        try:
            outcome = run_program(program.text, limits, **extra)
            status, detail, stderr = outcome.status, outcome.detail, outcome.stderr_tail
        except Exception as exc:  # the host failed, not the program: recorded, not raised
            status, detail, stderr = "sandbox-error", f"{type(exc).__name__}: {exc}", ""
        return {"id": program.id, "group": program.group, "style": program.style,
                "expected": program.expected, "status": status, "detail": detail,
                "stderr_last_line": _last_line(stderr), "program_sha": program.sha}

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verdict") as pool:
        yield from pool.map(one, programs)


def matches(expected: str, status: str) -> bool:
    return status == "pass" if expected == "pass" else expected == "fail" and status in FAILED


def summarize(rows: Sequence[dict[str, Any]]) -> None:
    """A line per group, then the styles whose verdicts missed the expected one."""
    for group, members in _by_group(rows).items():
        statuses = Counter(r["status"] for r in members)
        counts = ", ".join(f"{status} {n}" for status, n in statuses.most_common())
        known = [r for r in members if r["expected"] != "unknown"]
        hits = sum(matches(r["expected"], r["status"]) for r in known)
        expected = f"; as expected {hits}/{len(known)}" if known else ""
        print(f"{group}: {len(members)} programs: {counts}{expected}")
    misses = Counter((r["group"], r["style"], r["status"], r["detail"] or r["stderr_last_line"])
                     for r in rows if r["expected"] != "unknown"
                     and not matches(r["expected"], r["status"]))
    for (group, style, status, why), n in sorted(misses.items()):
        print(f"  not as expected: {group} {style} -> {status} x{n}: {why[:160]}")


def _by_group(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["group"]].append(row)
    return dict(groups)


def run_command(args: argparse.Namespace) -> None:
    described = use_code_root(Path(args.code_root))
    from jobs.core.sections import default_benchmarks_dir

    benchmarks = Path(args.benchmarks or default_benchmarks_dir())
    try:
        programs, notes = build_programs(benchmarks, args.tasks, args.styles, args.wrong)
    except FileNotFoundError as exc:
        raise SystemExit(f"verdict_change_bench: {exc.filename} is missing: point --benchmarks "
                         "(or SELFALIGN_BENCHMARKS_DIR) at the benchmark files, or fetch them "
                         "with `selfalign benchmarks download`") from None
    print(f"code root {args.code_root} ({described}); {len(programs)} programs, "
          f"{args.workers} workers")
    for note in notes:
        print(f"  {note}")
    started = time.perf_counter()
    rows = []
    with open(args.out, "w", encoding="utf-8") as out:
        for row in run_all(programs, args.workers):
            out.write(json.dumps(row) + "\n")
            rows.append(row)
    print(f"ran {len(rows)} programs in {time.perf_counter() - started:.1f} s -> {args.out}")
    summarize(rows)


# --- compare ----------------------------------------------------------------------------

def read_rows(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return {row["id"]: row for row in map(json.loads, handle) if row}


def expected_line(group: str, old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> str:
    known_old = [r for r in old if r["expected"] != "unknown"]
    if not known_old:
        passes = (sum(r["status"] == "pass" for r in rows) for rows in (old, new))
        return f"{group}: pass under OLD {next(passes)}/{len(old)}, under NEW {next(passes)}/{len(new)}"
    hits = [sum(matches(r["expected"], r["status"]) for r in rows) for rows in (old, new)]
    return (f"{group}: as expected under OLD {hits[0]}/{len(old)}, "
            f"under NEW {hits[1]}/{len(new)}")


def compare_command(args: argparse.Namespace) -> None:
    old, new = read_rows(args.old), read_rows(args.new)
    both = [key for key in old if key in new]
    print(f"programs compared: {len(both)} (only in OLD {len(old) - len(both)}, "
          f"only in NEW {len(new) - len(both)})")
    differ = [key for key in both if old[key].get("program_sha") != new[key].get("program_sha")]
    if differ:
        # The set is built by the code under test (dag: its parser); say when it moved.
        print(f"program text differs between the runs for {len(differ)}: {', '.join(differ[:5])}")
    errors = [sum(rows[k]["status"] == "sandbox-error" for k in both) for rows in (old, new)]
    if any(errors):
        print(f"sandbox-error (no verdict at all) under OLD {errors[0]}, under NEW {errors[1]}")
    changed = [key for key in both if old[key]["status"] != new[key]["status"]]
    print(f"verdicts changed: {len(changed)}")
    # By group too: pass -> fail is a regression for a correct program, a fix for a wrong one.
    table = Counter((old[k]["status"], new[k]["status"], new[k]["group"], new[k]["style"])
                    for k in changed)
    for (before, after, group, style), n in sorted(table.items()):
        print(f"  {before:>13} -> {after:<13} {group:<8} {style:<20} {n:>4}")
    for key in changed:
        row = new[key]
        print(f"{key}: {old[key]['status']} -> {row['status']}: "
              f"{(row['detail'] or row['stderr_last_line'])[:200]}")
    olds, news = _by_group(old[k] for k in both), _by_group(new[k] for k in both)
    for group in olds:
        print(expected_line(group, olds[group], news.get(group, [])))


# --- command line -----------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every program, write JSON lines")
    run.add_argument("--out", required=True, help="JSON lines file to write")
    run.add_argument("--code-root", default=str(REPO), help="checkout whose udfs is measured")
    run.add_argument("--workers", type=int, default=2, help="programs run at once")
    run.add_argument("--benchmarks", help="dir with the EvalPlus files")
    run.add_argument("--tasks", type=int, default=60, help="tasks per benchmark")
    run.add_argument("--styles", type=int, default=4, help="styles per correct task")
    run.add_argument("--wrong", type=int, default=3, help="wrong tasks per benchmark")
    run.set_defaults(handler=run_command)
    compare = commands.add_parser("compare", help="compare two run files")
    compare.add_argument("old")
    compare.add_argument("new")
    compare.set_defaults(handler=compare_command)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
