"""Running completions in the sandbox: ground truth, checks, verdicts.

- expected outputs never leave the machine that computed them: the ground truth writes
  them pickled into its sandbox dir, they are kept in a temp dir beside the executor and
  each check finds its file in its own dir, bound read-only (HumanEval/15 and Mbpp/255
  make hundreds of MB of them). Code written against this harness could read it, as it
  could find the sandbox's token in its own memory (udfs/sandbox/harness.py).
- time: each call has a CPU-time limit of max(min_time_limit, factor x the reference's CPU
  time on that input) (EvalPlus: 1 s and 4x, in wall time; CPU time is steadier on a
  loaded machine). The program as a whole gets the sandbox limits, raised to cover factor
  x the reference's total time, at most max_cpu_seconds. HumanEval and MBPP programs get
  the sandbox's CPU limit and four times that in wall time.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from udfs.evaluation.problems import VARIANTS, Problem
from udfs.evaluation.programs import (
    GROUND_TRUTH_FILE,
    check_program,
    ground_truth_program,
    output_file,
    program_with_tests,
    tests_start,
)
from udfs.sandbox import Limits, Outcome, run_program


@dataclass(frozen=True)
class Expected:
    """Ground truth of an EvalPlus task, kept where it was computed (executor disk).

    Its outputs stay pickled in `directory`, never loaded outside the sandbox; each check
    gets a copy of its variant's file. Outputs can be large (HumanEval/15 and Mbpp/255
    reach hundreds of MB), which is why they travel neither through Spark nor in programs.
    """

    directory: str
    cpu: dict[str, list[float]]  # variant -> the reference's CPU seconds per input
    overhead_cpu: float = 0.0  # harness time: start-up, unpickling, pickling

    def file(self, variant: str) -> Path:
        return Path(self.directory) / output_file(variant)

    @staticmethod
    def parse(data: bytes | str) -> tuple[dict[str, list[float]], float]:
        raw = json.loads(data)
        cpu = {v: [float(c) for c in raw[v]["cpu"]] for v in VARIANTS if v in raw}
        return cpu, float(raw.get("overhead_cpu", 0.0))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class ExecSettings:
    """How programs run: the sandbox, and the evaluation's time rules."""

    limits: Limits = field(default_factory=Limits)
    isolation: str = "auto"
    allow_weaker: bool = False
    cgroup_parent: str | None = None
    min_time_limit: float = 1.0  # CPU seconds each EvalPlus input may take at least
    time_limit_factor: float = 4.0  # times the reference's CPU time on the input
    max_cpu_seconds: int = 240  # per program, ground truth included
    max_output_file_bytes: int = 1 << 30  # a ground-truth output file
    work_root: str | None = None  # where run dirs and ground truth go (default: TMPDIR)

    def input_limits(self, cpu: Sequence[float]) -> list[float]:
        return [max(self.min_time_limit, self.time_limit_factor * c) for c in cpu]

    def program_limits(self, expected: Expected | None, variant: str) -> Limits:
        """The sandbox limits, raised to cover factor x the reference's time on the variant."""
        if expected is None:
            return self.limits
        need = self.time_limit_factor * sum(expected.cpu.get(variant, ())) + 2 * expected.overhead_cpu
        cpu = min(self.max_cpu_seconds, max(self.limits.cpu_seconds, int(need) + 3))
        return replace(self.limits, cpu_seconds=cpu,
                       wall_seconds=max(self.limits.wall_seconds, 2.0 * cpu + 10.0))

    def test_limits(self) -> Limits:
        """HumanEval/MBPP: the sandbox's CPU limit, with wall time to spare on a busy machine
        (Mbpp/123's reference alone needs seconds)."""
        return replace(self.limits, wall_seconds=max(self.limits.wall_seconds,
                                                     4.0 * self.limits.cpu_seconds))

    def ground_truth_limits(self) -> Limits:
        cpu = max(self.limits.cpu_seconds, self.max_cpu_seconds)
        return replace(self.limits, cpu_seconds=cpu,
                       wall_seconds=max(self.limits.wall_seconds, 2.0 * cpu + 10.0),
                       file_size_bytes=max(self.limits.file_size_bytes, self.max_output_file_bytes))


@dataclass(frozen=True)
class Verdict:
    """One completion's result on one problem."""

    status: str  # a sandbox status, or "reference-error" when the ground truth failed
    detail: str
    base_passed: bool
    plus_passed: bool | None  # None for sets without plus tests
    duration_s: float

    @property
    def passed(self) -> bool:
        """The set's own figure: base for HumanEval/MBPP, plus for HumanEval+/MBPP+."""
        return bool(self.plus_passed) if self.plus_passed is not None else self.base_passed


_BARE_EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(Error|Exception)")
_CARETS = re.compile(r"[\^~]+")


def why(outcome: Outcome) -> str:
    """One line saying why a run failed: its last stderr line, else the sandbox's detail."""
    if outcome.passed:
        return ""
    lines = [line.strip() for line in outcome.stderr_tail.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    detail = outcome.detail
    if last and outcome.status == "fail":
        if _BARE_EXCEPTION.fullmatch(last):
            # A bare `AssertionError`: the failing statement is the traceback's source line.
            source = next((line for line in reversed(lines[:-1]) if not _CARETS.fullmatch(line)), "")
            if source and not source.startswith(("File ", "Traceback")):
                return f"{last} at: {source}"[:500]
        return last[:500]
    return (f"{detail}: {last}" if last and last not in detail else detail)[:500]


def run_in_dir(program: str, limits: Limits, settings: ExecSettings, tests_from_line: int,
               give: dict[str, Path] | None = None, keep: Sequence[str] = (),
               into: Path | None = None) -> tuple[Outcome, list[str]]:
    """run_program with `give` (name -> file) in the program's dir; after a pass, the files
    named in `keep` are copied to `into`. Returns the outcome and the names copied."""
    outcome = run_program(program, limits, settings.isolation, settings.allow_weaker,
                          settings.work_root, give=give, keep=keep, into=into,
                          cgroup_parent=settings.cgroup_parent, tests_from_line=tests_from_line)
    return outcome, list(outcome.kept)


def compute_expected(problem: Problem, settings: ExecSettings) -> tuple[Expected | None, Verdict | None]:
    """Ground truth of an EvalPlus problem, or else the verdict every completion gets.

    The caller removes the Expected's directory (Expected.remove) when done with it.
    """
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="selfalign-expected-", dir=settings.work_root))
    names = [GROUND_TRUTH_FILE, *(output_file(v) for v in problem.variants)]
    outcome, moved = run_in_dir(ground_truth_program(problem), settings.ground_truth_limits(),
                                settings, tests_start(problem, problem.reference),
                                keep=names, into=directory)
    failure = None
    if not outcome.passed:
        failure = why(outcome)
    elif set(moved) != set(names):
        failure = "the reference run left no " + ", ".join(sorted(set(names) - set(moved)))
    else:
        try:
            cpu, overhead = Expected.parse((directory / GROUND_TRUTH_FILE).read_bytes())
            if set(cpu) == set(problem.variants):
                return Expected(str(directory), cpu, overhead), None
            failure = f"{GROUND_TRUTH_FILE} lacks a variant"
        except (ValueError, KeyError, TypeError) as exc:
            failure = f"unreadable {GROUND_TRUTH_FILE}: {exc}"
    shutil.rmtree(directory, ignore_errors=True)
    return None, Verdict("reference-error", f"ground truth: {failure}", False, False,
                         time.monotonic() - started)


def evaluate_completion(problem: Problem, completion: str, settings: ExecSettings,
                        expected: Expected | None = None) -> Verdict:
    """Run one completion against the problem's tests (EvalPlus: base, then plus if base passed)."""
    if not problem.plus:
        outcome, _ = run_in_dir(program_with_tests(problem, completion), settings.test_limits(),
                                settings, tests_start(problem, completion))
        return Verdict(outcome.status, why(outcome), outcome.passed, None, outcome.duration_s)
    if expected is None:
        raise ValueError(f"{problem.task_id}: EvalPlus problems need their expected outputs")
    duration = 0.0
    passed: dict[str, bool] = {}
    outcome = None
    for variant in VARIANTS:
        program = check_program(problem, completion, variant,
                                settings.input_limits(expected.cpu[variant]))
        outcome, _ = run_in_dir(program, settings.program_limits(expected, variant), settings,
                                tests_start(problem, completion),
                                give={output_file(variant): expected.file(variant)})
        duration += outcome.duration_s
        passed[variant] = outcome.passed
        if not outcome.passed:
            break
    assert outcome is not None
    return Verdict(outcome.status, why(outcome), passed["base"], passed.get("plus", False), duration)


def evaluate_task(problem: Problem, completions: Sequence[str], settings: ExecSettings,
                  workers: int = 1) -> list[Verdict]:
    """Verdicts of several completions of one problem; the ground truth is computed once."""
    expected = None
    if problem.plus:
        expected, failed = compute_expected(problem, settings)
        if failed is not None:
            return [failed] * len(completions)

    def one(completion: str) -> Verdict:
        return evaluate_completion(problem, completion, settings, expected)

    try:
        if workers <= 1 or len(completions) <= 1:
            return [one(c) for c in completions]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, completions))
    finally:
        if expected is not None:
            expected.remove()
