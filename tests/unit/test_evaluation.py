"""udfs.evaluation: pass@k, loaders, program building and output comparison (no Spark).

A few tests run small programs in the real sandbox, as tests/unit/test_sandbox.py does.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from jobs.core.config import load_config
from jobs.core.sections import EvaluateConfig
from tests.paths import BENCHMARKS
from udfs.benchmarks import BenchmarkMissing
from udfs.evaluation import (
    DEFAULT_FILES,
    ExecSettings,
    Problem,
    defines,
    evaluate_task,
    extract_code,
    format_results,
    harness_namespace,
    load_problems,
    load_set,
    mbpp_entry_point,
    mbpp_prompt,
    mbpp_split,
    mean_pass_at_k,
    pass_at_k,
    problem_inputs,
    program_with_tests,
    solution_code,
)
from udfs.evaluation.instruct import docstring_task, instruct_parts, instruct_prompt
from udfs.evaluation.template import load_eval_template
from udfs.prompts import load_sft_template
from udfs.sandbox import Limits

needs_benchmarks = pytest.mark.skipif(
    not (BENCHMARKS / "mbpp.jsonl").is_file(),
    reason=f"benchmark files not found in {BENCHMARKS} (set SELFALIGN_BENCHMARKS_DIR)",
)

HARNESS = harness_namespace()
match = HARNESS["_sa_match"]


# --- pass@k ---------------------------------------------------------------------------

def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def test_pass_at_k_hand_computed():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 8, 5) == 1.0  # fewer than k failures: some k-subset always passes
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0


def test_pass_at_k_of_five_samples_two_passing_by_hand():
    # 5 samples, 2 pass, so 3 fail: pass@k = 1 - C(3,k)/C(5,k).
    assert pass_at_k(5, 2, 1) == pytest.approx(1 - 3 / 5)  # C(3,1)=3, C(5,1)=5
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3)=1, C(5,3)=10


@pytest.mark.parametrize(("n", "c", "k"), [(20, 7, 10), (200, 37, 100), (200, 1, 1), (200, 150, 100)])
def test_pass_at_k_matches_binomials_for_large_n(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-12, abs=1e-15)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="at least 5 samples"):
        pass_at_k(3, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_mean_pass_at_k_averages_tasks():
    assert mean_pass_at_k([(10, 3), (10, 10), (10, 0)], 1) == pytest.approx((0.3 + 1 + 0) / 3)


# --- MBPP ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("task", "split"), [(1, "prompt"), (10, "prompt"), (11, "test"), (510, "test"),
                                            (511, "validation"), (600, "validation"), (601, "train"),
                                            (974, "train")])
def test_mbpp_split(task, split):
    assert mbpp_split(task) == split


def test_mbpp_entry_point_is_the_called_function_the_reference_defines():
    code = "def helper(x):\n    return x\n\ndef similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
    test = "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"
    assert mbpp_entry_point(code, test) == "similar_elements"


def test_mbpp_prompt_holds_task_and_first_assert():
    prompt = mbpp_prompt("Write a function to add.", "assert add(1, 2) == 3")
    assert prompt == '"""\nWrite a function to add.\nassert add(1, 2) == 3\n"""\n'


@needs_benchmarks
def test_mbpp_loader_keeps_the_test_split():
    problems = load_set("mbpp", "mbpp.jsonl", BENCHMARKS)
    numbers = [int(p.task_id.split("/")[1]) for p in problems]
    assert numbers == list(range(11, 511))
    first = problems[0]
    assert first.entry_point == "remove_Occ" and first.style == "write"
    assert "assert remove_Occ" in first.prompt and first.tests.count("assert") == 3


@needs_benchmarks
def test_loaders_count_every_set():
    problems = load_problems(("humaneval", "humanevalplus", "mbpp", "mbppplus"), DEFAULT_FILES, BENCHMARKS)
    counts: dict[str, int] = {}
    for p in problems:
        counts[p.benchmark] = counts.get(p.benchmark, 0) + 1
    # MBPP on EvalPlus's task set by default: the MBPP+ file's 378 tasks, from every split.
    assert counts == {"humaneval": 164, "humanevalplus": 164, "mbpp": 378, "mbppplus": 378}
    mbpp = {p.task_id for p in problems if p.benchmark == "mbpp"}
    assert mbpp == {p.task_id for p in problems if p.benchmark == "mbppplus"}
    assert "Mbpp/2" in mbpp  # a task of MBPP's prompt split, outside 11-510
    original = load_problems(("mbpp",), DEFAULT_FILES, BENCHMARKS, mbpp_tasks="test_split")
    assert [p.task_id for p in original] == [f"Mbpp/{n}" for n in range(11, 511)]
    limited = load_problems(("humaneval", "mbppplus"), DEFAULT_FILES, BENCHMARKS, limit=2)
    assert [p.task_id for p in limited] == ["HumanEval/0", "HumanEval/1", "Mbpp/2", "Mbpp/3"]


@needs_benchmarks
def test_mbpp_plus_inputs_get_their_tuples_and_complex_numbers_back():
    problems = {p.task_id: p for p in load_set("mbppplus", DEFAULT_FILES["mbppplus"], BENCHMARKS)}
    first = problem_inputs(problems["Mbpp/2"], "base")[0]
    assert first == [(3, 4, 5, 6), (5, 7, 4, 10)]
    assert isinstance(problem_inputs(problems["Mbpp/124"], "base")[0][1], complex)
    assert problem_inputs(problems["Mbpp/793"], "plus") == []  # stored as {} in v0.2.0


def test_missing_file_is_the_one_line_benchmark_error(tmp_path):
    with pytest.raises(BenchmarkMissing, match="selfalign benchmarks download") as error:
        load_set("mbpp", "mbpp.jsonl", tmp_path)
    assert "\n" not in str(error.value)


def test_config_defaults_name_the_same_files():
    assert EvaluateConfig().benchmark_files == DEFAULT_FILES
    cfg = load_config(None, ["evaluate.sets=[mbpp]", "evaluate.limit=3"])
    assert cfg.evaluate.sets == ["mbpp"] and cfg.evaluate.limit == 3
    with pytest.raises(ValueError, match=r"evaluate\.sets"):
        load_config(None, ["evaluate.sets=[ds1000]"])


# --- programs -------------------------------------------------------------------------------

HE = Problem(
    "humaneval", "HumanEval/x", 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum."""\n',
    "total", "    return sum(xs)\n", "complete",
    tests="def check(candidate):\n    assert candidate([1, 2]) == 3\n",
)


def test_body_completion_follows_the_prompt():
    assert solution_code(HE, "    return sum(xs)\n") == HE.prompt + "    return sum(xs)\n"


def test_full_function_keeps_the_prompts_imports_and_replaces_its_stub():
    code = solution_code(HE, "def total(xs: List[int]) -> int:\n    return sum(xs)\n")
    assert code.startswith("from typing import List")
    assert code.count("def total(") == 2 and code.rstrip().endswith("return sum(xs)")


def test_markdown_block_defining_the_entry_point_is_extracted():
    answer = ("Here you go:\n```python\nprint('example')\n```\nand\n```python\n"
              "def total(xs):\n    return sum(xs)\n```\nDone.")
    assert extract_code(answer, "total") == "def total(xs):\n    return sum(xs)\n"
    assert extract_code("```\ndef total(xs):\n    return 0", "total") == "def total(xs):\n    return 0"


def test_defines_looks_at_top_level_only():
    assert defines("def total(x):\n    pass\n", "total")
    assert not defines("    def total(x):\n        pass\n", "total")
    assert not defines("def totals(x):\n    pass\n", "total")


def test_test_programs_call_the_checks():
    program = program_with_tests(HE, "    return sum(xs)\n")
    assert program.rstrip().endswith("check(total)")
    mbpp = Problem("mbpp", "Mbpp/9", mbpp_prompt("Add.", "assert add(1, 2) == 3"), "add",
                   "def add(a, b):\n    return a + b\n", "write",
                   tests="import math\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n")
    program = program_with_tests(mbpp, mbpp.reference)
    assert "def add(a, b)" in program and program.rstrip().endswith("assert add(0, 0) == 0")
    assert "import math" in program


# --- output comparison (the harness's own function) ---------------------------------------------

def test_floats_within_atol_and_the_implicit_1e6():
    assert match(1.0 + 1e-7, 1.0)  # float expected: atol 1e-6 applies
    assert not match(1.01, 1.0)
    assert match([1.0, 2.0 + 5e-7], [1.0, 2.0])
    assert match(0.50004, 0.5, atol=1e-4)
    assert not match(0.5002, 0.5, atol=1e-4)
    assert match([[1.0, 2.00001]], [[1.0, 2.0]], atol=1e-4)  # nested, with the task's atol


def test_exact_comparison_follows_python_equality():
    assert match(1, 1.0) and match(True, 1)
    assert not match([1, 2], (1, 2))  # a list never equals a tuple, as in EvalPlus
    assert not match((1.0, 2.0), [1.0, 2.0])  # nor within a tolerance
    assert not match([1.0, 2.0], [1.0, 2.0, 3.0])
    assert not match("1", 1)
    assert match({"a": [1, 2]}, {"a": [1, 2]})


def test_nan_equals_nan():
    nan = float("nan")
    assert match(nan, nan)
    assert match([1.0, nan], [1.0, nan])
    assert match((nan, "x"), (nan, "x"))
    assert not match(nan, 1.0)
    assert not match(1.0, nan)


def test_special_oracles():
    assert match({4, 5}, (5, 4), oracle="set_eq")
    assert match([5, 4], (4, 5), oracle="set_eq")
    assert not match((4,), (4, 5), oracle="set_eq")
    assert match("a match object", True, oracle="not_none")  # any object counts as not None
    assert not match(None, True, oracle="not_none")
    assert match(False, False, oracle="not_none")
    assert match(0, 7, oracle="or_zero")
    assert match(-1.0, 99, atol=1e-4, oracle="poly_root", args=([1, 1],))  # 1 + x = 0
    assert not match(1.0, 99, atol=1e-4, oracle="poly_root", args=([1, 1],))
    assert match("anything", False, oracle="always")


# --- real runs in the sandbox ----------------------------------------------------------------

QUICK = ExecSettings(limits=Limits(cpu_seconds=5, wall_seconds=20.0, memory_bytes=1 << 30),
                     min_time_limit=0.5, max_cpu_seconds=20)

HALF = Problem(
    "humanevalplus", "HumanEval/half", 'def half(x):\n    """x / 2"""\n', "half",
    "    return x / 2\n", "complete",
    base_inputs="[[2], [3]]", plus_inputs="[[1e-9], [7], [100]]",
)


def test_evalplus_reference_passes_and_variants_are_told_apart():
    candidates = [
        HALF.reference,
        "    return x * 0.5 + 1e-9\n",  # within the implicit 1e-6
        "    return x / 2 if x < 50 else 0\n",  # base passes, plus fails
        "    return None\n",
        "    while True:\n        pass\n",
    ]
    verdicts = evaluate_task(HALF, candidates, QUICK)
    got = [(v.base_passed, v.plus_passed) for v in verdicts]
    assert got == [(True, True), (True, True), (True, False), (False, False), (False, False)]
    assert "plus input 2 [100]: expected 50.0, got 0" in verdicts[2].detail
    assert "s of CPU" in verdicts[4].detail
    assert [v.passed for v in verdicts] == [True, True, False, False, False]


def test_broken_reference_is_a_reference_error():
    broken = Problem("mbppplus", "Mbpp/0", '"""\nDouble.\n"""\n', "double",
                     "def double(x):\n    return x * 2 if x < 5 else 1 / 0\n", "write",
                     base_inputs="[[1], [9]]", plus_inputs="[]")
    verdicts = evaluate_task(broken, ["def double(x):\n    return 2 * x\n"], QUICK)
    assert verdicts[0].status == "reference-error"
    assert "ZeroDivisionError on base input 1" in verdicts[0].detail


def test_humaneval_style_tests_run_the_check():
    passed, failed = evaluate_task(HE, [HE.reference, "    return 0\n"], QUICK)
    assert passed.passed and passed.plus_passed is None
    assert not failed.passed and failed.status == "fail"


def test_empty_completion_fails_every_set():
    mbpp = Problem("mbpp", "Mbpp/9", mbpp_prompt("Add.", "assert add(1, 2) == 3"), "add",
                   "def add(a, b):\n    return a + b\n", "write", tests="assert add(1, 2) == 3\n")
    for problem in (HE, HALF, mbpp):
        verdict = evaluate_task(problem, [""], QUICK)[0]
        assert not verdict.passed and not verdict.base_passed, problem.benchmark


def test_cli_reports_a_missing_benchmark_in_one_line(tmp_path, capsys):
    from jobs.cli import main

    with pytest.raises(SystemExit) as code:
        main(["evaluate", "--reference", "--sets", "mbpp", "--set", f"benchmarks.dir={tmp_path}"])
    assert code.value.code == 2
    *_, err = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"selfalign: error: benchmark files are missing in {tmp_path} and fetching")
    assert "point benchmarks.dir" in err and "selfalign benchmarks download" in err


# --- the report -------------------------------------------------------------------------------

def test_results_table_puts_sets_side_by_side():
    rows = [
        {"benchmark": b, "variant": v, "decoding": "greedy", "k": 1, "pass_at_k": p, "n_tasks": 3}
        for b, v, p in [("mbppplus", "plus", 0.5), ("humaneval", "base", 1.0),
                        ("humanevalplus", "base", 0.75), ("humanevalplus", "plus", 0.25)]
    ]
    table = format_results(rows)
    header = table.splitlines()[0]
    assert header.index("HumanEval") < header.index("HumanEval+ base") < header.index("MBPP+")
    assert "greedy pass@1" in table and "100.0" in table and "25.0" in table


def test_stage_summary_counts_tasks_variants_and_missing_ones():
    from jobs.stages.evaluate import summarize

    def row(benchmark, task, index, base, plus=None):
        passed = base if plus is None else plus
        return {"benchmark": benchmark, "task_id": task, "decoding": "sampled", "sample_index": index,
                "passed": passed, "base_passed": base, "plus_passed": plus, "status": "pass" if passed
                else "fail", "detail": None if passed else "AssertionError"}

    samples = [row("humanevalplus", "H/0", i, base=i < 3, plus=i < 1) for i in range(10)]
    samples += [row("humanevalplus", "H/1", i, base=True, plus=True) for i in range(10)]
    samples += [row("mbpp", "M/1", i, base=False) for i in range(10)]
    samples += [row("mbpp", "M/old", i, base=True) for i in range(10)]  # not asked this time
    asked = [("humanevalplus", "H/0", "sampled"), ("humanevalplus", "H/1", "sampled"),
             ("mbpp", "M/1", "sampled"), ("mbpp", "M/2", "sampled")]
    figures, missing, failed = summarize(samples, asked, [1, 5, 100], with_failures=True)
    got = {(r["benchmark"], r["variant"], r["k"]): r["pass_at_k"] for r in figures}
    assert got[("humanevalplus", "base", 1)] == pytest.approx((0.3 + 1.0) / 2)
    assert got[("humanevalplus", "plus", 1)] == pytest.approx((0.1 + 1.0) / 2)
    assert got[("humanevalplus", "base", 5)] == pytest.approx((1 - 21 / 252 + 1.0) / 2)
    assert got[("mbpp", "base", 1)] == 0.0
    assert ("mbpp", "plus", 1) not in got and ("mbpp", "base", 100) not in got
    assert {r["n_tasks"] for r in figures} == {1, 2}
    assert missing == {"mbpp/sampled": 1}
    assert len(failed) == 9 + 10 and failed[0]["task_id"] == "H/0"


def test_why_names_the_failing_assert():
    from udfs.evaluation import why
    from udfs.sandbox import Outcome

    trace = ('Traceback (most recent call last):\n  File "/sandbox/program.py", line 9, in <module>\n'
             "    assert set_to_tuple({12, 13}) == (12, 13)\nAssertionError\n")
    failed = Outcome("fail", False, 1, 0.1, "bwrap", "", trace, "exit code 1")
    assert why(failed) == "AssertionError at: assert set_to_tuple({12, 13}) == (12, 13)"
    timeout = Outcome("timeout", False, -9, 20.0, "bwrap", "", "", "wall time over 20 s")
    assert why(timeout) == "wall time over 20 s"


# --- the instruct format ------------------------------------------------------------------

def test_docstring_task_splits_the_text_from_its_first_assert():
    prompt = mbpp_prompt("Write a function to add.\nBoth are ints.", "assert add(1, 2) == 3")
    assert docstring_task(prompt) == ("Write a function to add.\nBoth are ints.", "assert add(1, 2) == 3")
    assert docstring_task('"""\nNo test here.\n"""\n') == ("No test here.", "")


def test_instruct_parts_of_mbpp_ask_for_the_first_assertion():
    problem = Problem("mbpp", "Mbpp/9", mbpp_prompt("Write add.", "assert add(1, 2) == 3"), "add",
                      "def add(a, b):\n    return a + b\n", "write")
    instruction, opening = instruct_parts(problem, load_eval_template())
    assert instruction == ("Write add.\nYour code should pass the following assertion:\n"
                           "```python\nassert add(1, 2) == 3\n```")
    assert opening == "```python\n"


def test_instruct_parts_of_humaneval_open_the_code_block_with_the_prompt():
    stub = 'def inc(x: int) -> int:\n    """Add one."""\n'
    problem = Problem("humaneval", "HumanEval/0", stub, "inc", "    return x + 1\n", "complete")
    wording = load_eval_template()
    instruction, opening = instruct_parts(problem, wording)
    assert f"```python\n{stub.strip()}\n```" in instruction
    assert opening == "```python\n" + stub
    # A completion continues the stub: the code under test is the stub and the body.
    assert solution_code(problem, "    return x + 1\n") == stub + "    return x + 1\n"
    template = load_sft_template()
    assert instruct_prompt(problem, template, wording) == template.prompt(instruction) + opening
    assert instruct_prompt(problem, None, wording) == instruction  # a chat server: its own template
