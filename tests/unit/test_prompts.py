"""udfs.prompts: loading and validating conf/prompts, deterministic builders, golden layouts.

Golden files in tests/golden/ were written by hand from the documented layout;
no expected text here was produced by running the builders.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from udfs.parse import RESPONSE_OPENING, parse_response, program_for
from udfs.prompts import (
    KINDS,
    STOPS,
    PromptConfigError,
    PromptSet,
    concepts_prompt,
    default_prompts_dir,
    instruct_prompt,
    judge_prompt,
    load_judge,
    load_prompts,
    load_sft_template,
    pick_category_difficulty,
    prompt_version,
    respond_prompt,
    split_docstring,
    stop_sequences,
)

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
FN = 'def inc(n):\n    """Add one to n."""\n    return n + 1\n'
KEYS = [f"42:{i:04d}" for i in range(40)]


@pytest.fixture(scope="module")
def real() -> PromptSet:
    return load_prompts()


@pytest.fixture(scope="module")
def golden() -> PromptSet:
    return load_prompts(GOLDEN / "prompts")


def _blocks(prompt: str, label: str) -> list[str]:
    """The example blocks of a prompt, without the instruction and the final query."""
    parts = re.split(rf"^=== {label} \d+ ===\n", prompt, flags=re.MULTILINE)
    return parts[1:-1]


def _golden_text(name: str) -> str:
    # Golden files hold the prompt plus one newline (see tests/golden/README.md).
    text = (GOLDEN / name).read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1]


# --- loading ----------------------------------------------------------------------

def test_default_dir_is_the_packaged_conf_prompts(real: PromptSet):
    assert default_prompts_dir() == REPO / "conf" / "prompts"
    assert Path(real.directory) == REPO / "conf" / "prompts"


def test_versions_are_exposed_for_every_kind(real: PromptSet):
    versions = {kind: prompt_version(kind, real) for kind in KINDS}
    assert versions == {
        "judge": "judge-v2",
        "concepts": "oss-instruct-v1",
        "instruct": "oss-instruct-v1",
        "respond": "respond-v2",
    }
    assert prompt_version("judge") == "judge-v2"  # default config when none is passed
    with pytest.raises(ValueError, match="unknown prompt kind 'select'"):
        prompt_version("select", real)


def test_real_config_has_the_documented_shape(real: PromptSet):
    answers = Counter(example.answer for example in real.judge.examples)
    assert answers == {"Yes": 4, "No": 3}
    assert len(real.oss.examples) == 16 and real.oss.shots == 8
    assert real.oss.difficulties == ["easy", "medium", "hard"]
    assert "function implementation" in real.oss.categories
    # Every category and difficulty is demonstrated by at least one example.
    assert {ex.category for ex in real.oss.examples} == set(real.oss.categories)
    assert {ex.difficulty for ex in real.oss.examples} == set(real.oss.difficulties)


def _copy_real(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), target)
    return target


def _edit(directory: Path, name: str, change: Any) -> Path:
    path = directory / name
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _set(keys: tuple[Any, ...], value: Any):
    def change(raw: Any) -> None:
        for key in keys[:-1]:
            raw = raw[key]
        raw[keys[-1]] = value

    return change


def _delete(keys: tuple[Any, ...]):
    def change(raw: Any) -> None:
        for key in keys[:-1]:
            raw = raw[key]
        del raw[keys[-1]]

    return change


BROKEN_RESPONSE = "## Reasoning\nx\n## Implementation\n```python\npass\n```\n## Explanation\ny\n"


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("judge.yaml", _delete(("examples", 2, "answer")), "missing required key 'examples.2.answer'"),
        ("judge.yaml", _delete(("version",)), "missing required key 'version'"),
        ("judge.yaml", _set(("version",), 1), "key 'version': Input should be a valid string"),
        ("judge.yaml", _set(("examples", 0, "answer"), "Maybe"), "key 'examples.0.answer'"),
        ("judge.yaml", _set(("examples", 0, "colour"), "red"), "unknown key 'examples.0.colour'"),
        ("judge.yaml", _set(("instruction",), "  "), "key 'instruction': must not be blank"),
        ("oss_instruct.yaml", _delete(("categories",)), "missing required key 'categories'"),
        ("oss_instruct.yaml", _delete(("examples", 5, "response")), "missing required key 'examples.5.response'"),
        ("oss_instruct.yaml", _set(("shots",), 17), "key 'shots': 17 is more than the 16 examples"),
        ("oss_instruct.yaml", _set(("examples", 3, "category"), "poetry"), "key 'examples.3.category': 'poetry' is not in categories"),
        ("oss_instruct.yaml", _set(("examples", 3, "difficulty"), "brutal"), "key 'examples.3.difficulty'"),
        ("oss_instruct.yaml", _set(("examples", 1, "concepts"), "a,\nb"), "key 'examples.1.concepts'"),
        ("oss_instruct.yaml", _set(("examples", 4, "response"), BROKEN_RESPONSE), "key 'examples.4.response': missing sections: tests"),
        ("respond.yaml", _delete(("examples", 3, "response")), "missing required key 'examples.3.response'"),
        ("respond.yaml", _set(("examples", 7, "response"), "no headings"), "key 'examples.7.response': must start with the line '## Reasoning'"),
        ("respond.yaml", _set(("examples",), []), "key 'examples': List should have at least 1 item"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path: Path, name: str, change: Any, message: str):
    directory = _copy_real(tmp_path)
    path = _edit(directory, name, change)
    with pytest.raises(PromptConfigError) as err:
        load_prompts(directory)
    assert str(err.value).startswith(f"prompts: {path}: {message}")
    assert "\n" not in str(err.value)


def test_judge_needs_both_answers(tmp_path: Path):
    directory = _copy_real(tmp_path)
    _edit(directory, "judge.yaml", lambda raw: raw.update(examples=[e for e in raw["examples"] if e["answer"] == "Yes"]))
    with pytest.raises(PromptConfigError, match="key 'examples': needs at least one Yes and one No"):
        load_prompts(directory)


def test_file_level_errors(tmp_path: Path):
    directory = _copy_real(tmp_path)
    (directory / "respond.yaml").unlink()
    with pytest.raises(PromptConfigError, match=r"file not found: .*respond\.yaml"):
        load_prompts(directory)
    (directory / "respond.yaml").write_text("version: [unclosed\n")
    with pytest.raises(PromptConfigError, match=r"respond\.yaml line \d+ is not valid YAML"):
        load_prompts(directory)
    (directory / "respond.yaml").write_text("- a list\n")
    with pytest.raises(PromptConfigError, match="mapping at the top level"):
        load_prompts(directory)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set(("instruction",), "Is the docstring {docstring} enough?"), "must hold {code} exactly once"),
        (_set(("instruction",), "{code} {code} {docstring}"), "must hold {code} exactly once"),
        (_set(("reply",), "  "), "key 'reply': must not be blank"),
        (_set(("layout",), "blocks"), "key 'reply': is for layout: issue only"),
    ],
)
def test_issue_layout_errors_name_the_file_and_key(tmp_path: Path, change: Any, message: str):
    directory = _copy_real(tmp_path)
    path = _edit(directory, "judge_published.yaml", change)
    with pytest.raises(PromptConfigError) as err:
        load_judge("judge_published.yaml", directory)
    assert str(err.value).startswith(f"prompts: {path}: ") and message in str(err.value)


# --- judge ------------------------------------------------------------------------

def test_published_judge_template_frames_each_function_as_an_issue(real: PromptSet):
    judge = load_judge("judge_published.yaml")
    assert judge.layout == "issue" and real.judge.layout == "blocks"
    issue = replace(real, judge=judge)
    prompt = judge_prompt(FN, issue, "k")
    reply = judge.reply.strip()
    # One thread per example and one for the function, each asking, then answered.
    assert prompt.count("<issue_start>username_0: ") == len(judge.examples) + 1
    assert prompt.count("<issue_comment>username_1: ") == len(judge.examples) + 1
    answers = re.findall(re.escape(reply) + r" (Yes|No)\n\n", prompt)
    assert Counter(answers) == Counter(example.answer for example in judge.examples)
    # The function's thread comes last, ends on the reply, and shows the docstring
    # apart from the code.
    query = prompt.rsplit("<issue_start>", 1)[1]
    assert query.endswith(f"<issue_comment>username_1: {reply}")
    assert "Add one to n." in query and "return n + 1" in query and '"""' not in query
    assert prompt_version("judge", issue) == judge.version != real.judge.version
    # The order of the examples depends on the key, as in judge.yaml's layout.
    assert len({judge_prompt(FN, issue, key) for key in KEYS}) > 1


def test_issue_slots_are_filled_once(real: PromptSet):
    """A docstring that mentions a slot by name is shown as written."""
    issue = replace(real, judge=load_judge("judge_published.yaml"))
    code = 'def f(x):\n    """Fill {code} and {docstring} into x."""\n    return x\n'
    query = judge_prompt(code, issue, "k").rsplit("<issue_start>", 1)[1]
    assert "Fill {code} and {docstring} into x." in query
    assert query.count("return x") == 1


def test_judge_prompt_is_deterministic_per_key(real: PromptSet):
    first = judge_prompt(FN, real, "42:abc")
    # Prompts for other keys in between and a freshly loaded config change nothing: the
    # order comes from the key, not from shared random state or the object identity.
    others = [judge_prompt(FN, real, key) for key in KEYS]
    assert judge_prompt(FN, load_prompts(), "42:abc") == first
    assert any(prompt != first for prompt in others)  # yet another key may order them otherwise
    # The key alone fixes the order: another function gets the examples in the same order.
    other_fn = judge_prompt("def g():\n    return None\n", real, "42:abc")
    assert other_fn != first
    assert _blocks(other_fn, "Function") == _blocks(first, "Function")


def test_judge_prompt_shows_all_seven_examples_in_a_per_key_order(real: PromptSet):
    orders = set()
    for key in KEYS:
        prompt = judge_prompt(FN, real, key)
        blocks = _blocks(prompt, "Function")
        assert len(blocks) == 7
        answers = Counter(re.search(r"^Answer: (Yes|No)$", b, re.MULTILINE).group(1) for b in blocks)
        assert answers == {"Yes": 4, "No": 3}
        orders.add(tuple(blocks))
    assert len({frozenset(order) for order in orders}) == 1  # always the same seven
    assert len(orders) > len(KEYS) // 2  # but shuffled differently per key


def test_judge_prompt_ends_on_the_answer_label(real: PromptSet):
    prompt = judge_prompt(FN, real, "k")
    assert prompt.startswith(real.judge.instruction.strip() + "\n\n=== Function 1 ===\n")
    # The docstring apart from the code, as the published judge showed it.
    assert prompt.endswith("=== Function 8 ===\nDocstring:\nAdd one to n.\nCode:\n"
                           "```python\ndef inc(n):\n    return n + 1\n```\nAnswer:")


def test_judge_prompt_does_not_depend_on_the_process_hash_seed(real: PromptSet):
    code = (
        "import hashlib; from udfs.prompts import load_prompts, judge_prompt, concepts_prompt;"
        "cfg = load_prompts();"
        "print(hashlib.sha256((judge_prompt('def f(x): return x', cfg, 'k')"
        " + concepts_prompt('x = 1', cfg, 'k')).encode()).hexdigest())"
    )
    here = hashlib.sha256(
        (judge_prompt("def f(x): return x", real, "k") + concepts_prompt("x = 1", real, "k")).encode()
    ).hexdigest()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == here


# --- concepts / instruct ---------------------------------------------------------

def test_concepts_prompt_draws_8_of_16_per_key(real: PromptSet):
    snippets = {ex.snippet.strip() for ex in real.oss.examples}
    draws = []
    seen: set[str] = set()
    for key in KEYS:
        prompt = concepts_prompt("def first(xs):\n    return xs[0]", real, key)
        assert prompt == concepts_prompt("def first(xs):\n    return xs[0]", real, key)
        assert prompt.endswith("=== Example 9 ===\nCode:\n```python\ndef first(xs):\n    return xs[0]\n```\nConcepts:")
        drawn = [re.search(r"```python\n(.*?)\n```", b, re.DOTALL).group(1) for b in _blocks(prompt, "Example")]
        assert len(drawn) == 8 and len(set(drawn)) == 8
        assert set(drawn) <= snippets
        draws.append(tuple(drawn))
        seen.update(drawn)
    assert len(set(draws)) == len(KEYS)
    assert seen == snippets  # over 40 keys every example gets used


def test_instruct_prompt_draws_8_of_16_per_key(real: PromptSet):
    tasks = {ex.instruction.strip() for ex in real.oss.examples}
    draws = set()
    for key in KEYS:
        prompt = instruct_prompt(["recursion", "memoization"], "bug fixing", "hard", real, key)
        assert prompt == instruct_prompt(["recursion", "memoization"], "bug fixing", "hard", real, key)
        assert prompt.endswith(
            "=== Example 9 ===\nConcepts: recursion, memoization\nCategory: bug fixing\n"
            "Difficulty: hard\nTask:\n"
        )
        drawn = [block.split("Task:\n", 1)[1].strip() for block in _blocks(prompt, "Example")]
        assert len(drawn) == 8 and len(set(drawn)) == 8 and set(drawn) <= tasks
        draws.add(tuple(drawn))
    assert len(draws) == len(KEYS)


def test_instruct_and_concepts_draws_are_independent(real: PromptSet):
    # Same key, different purposes: the two steps should not always show the same examples.
    by_snippet = {ex.snippet.strip(): ex.instruction.strip() for ex in real.oss.examples}
    differ = 0
    for key in KEYS:
        concepts = concepts_prompt("x = 1", real, key)
        instruct = instruct_prompt(["a"], "bug fixing", "easy", real, key)
        snippets = [re.search(r"```python\n(.*?)\n```", b, re.DOTALL).group(1) for b in _blocks(concepts, "Example")]
        tasks = [b.split("Task:\n", 1)[1].strip() for b in _blocks(instruct, "Example")]
        differ += [by_snippet[s] for s in snippets] != tasks
    assert differ == len(KEYS)


def test_instruct_prompt_rejects_unknown_labels_and_empty_concepts(real: PromptSet):
    with pytest.raises(ValueError, match="unknown category 'poetry'"):
        instruct_prompt(["a"], "poetry", "easy", real, "k")
    with pytest.raises(ValueError, match="unknown difficulty 'brutal'"):
        instruct_prompt(["a"], "bug fixing", "brutal", real, "k")
    with pytest.raises(ValueError, match="at least one concept"):
        instruct_prompt(["", "  "], "bug fixing", "easy", real, "k")


def test_instruct_prompt_keeps_concepts_on_one_line(real: PromptSet):
    prompt = instruct_prompt(["dynamic\nprogramming", "  graphs "], "bug fixing", "easy", real, "k")
    assert "\nConcepts: dynamic programming, graphs\nCategory: bug fixing\n" in prompt


def test_categories_follow_their_weights_and_default_to_function_implementation(real: PromptSet):
    from jobs.core.config import load_config

    published = load_config(None, []).generation.categories
    assert {pick_category_difficulty(f"s{i}", real, published)[0] for i in range(200)} == {"function implementation"}
    mix = {"function implementation": 0.5, "class implementation": 0.25, "program implementation": 0.25}
    drawn = Counter(pick_category_difficulty(f"s{i}", real, mix)[0] for i in range(2000))
    assert set(drawn) == set(mix)
    for name, weight in mix.items():
        assert abs(drawn[name] / 2000 - weight) < 0.05, (name, drawn)
    with pytest.raises(PromptConfigError, match="unknown 'poetry'"):
        pick_category_difficulty("s", real, {"poetry": 1.0})


def test_category_and_difficulty_are_deterministic_and_spread(real: PromptSet):
    picks = [pick_category_difficulty(f"42:{i}", real) for i in range(600)]
    assert picks == [pick_category_difficulty(f"42:{i}", real) for i in range(600)]
    categories = Counter(category for category, _ in picks)
    difficulties = Counter(difficulty for _, difficulty in picks)
    assert set(categories) == set(real.oss.categories)
    assert set(difficulties) == set(real.oss.difficulties)
    # Uniform draws: no label far from its share (600/4 = 150, 600/3 = 200).
    assert min(categories.values()) > 100 and min(difficulties.values()) > 150
    assert len(set(picks)) == len(real.oss.categories) * len(real.oss.difficulties)


# --- respond ----------------------------------------------------------------------

def test_respond_prompt_ends_inside_the_reasoning_section(real: PromptSet):
    prompt = respond_prompt("Write `twice(x)`.", real, "k")
    assert prompt == respond_prompt("Write `twice(x)`.", real, "k")
    assert prompt.endswith("=== Task ===\nWrite `twice(x)`.\n\n=== Response ===\n" + RESPONSE_OPENING)
    assert prompt.count("=== Task ===") == 2


def test_each_instruction_gets_one_worked_example_drawn_by_its_id(real: PromptSet):
    """As published: one solved example per task, drawn at random, here by the id (the
    same in every run), and every example in use across many instructions."""
    assert len(real.respond.examples) >= 10
    shown = []
    for i in range(400):
        prompt = respond_prompt("Write `twice(x)`.", real, f"id-{i}")
        [example] = [ex for ex in real.respond.examples if ex.instruction.strip() in prompt]
        assert example.response.strip() in prompt
        shown.append(example.instruction)
    counts = Counter(shown)
    assert len(counts) == len(real.respond.examples)
    assert min(counts.values()) > 400 / len(real.respond.examples) / 3


# --- stops ------------------------------------------------------------------------

def test_every_kind_has_stops_and_callers_get_a_fresh_list():
    assert set(STOPS) == set(KINDS)
    stops = stop_sequences("judge")
    stops.append("mutated")
    assert stop_sequences("judge") == ["\n"]
    assert stop_sequences("respond") == ["\n==="]
    with pytest.raises(ValueError, match="unknown prompt kind"):
        stop_sequences("nope")


def test_examples_never_contain_their_own_stop_sequence(real: PromptSet):
    # Otherwise the model would learn to emit a stop in the middle of an answer.
    for example in real.oss.examples:
        assert not any(stop in example.concepts.strip() for stop in STOPS["concepts"])
        assert not any(stop in example.instruction for stop in STOPS["instruct"])
    for example in real.respond.examples:
        assert not any(stop in example.response for stop in STOPS["respond"])


# --- golden -----------------------------------------------------------------------

def _assert_one_of_two(prompts: list[str], ab: str, ba: str) -> None:
    expected = {_golden_text(ab), _golden_text(ba)}
    assert set(prompts) <= expected, "a prompt matches neither hand-written golden file"
    assert set(prompts) == expected, "the per-key order never varied"


def test_golden_judge_prompt(golden: PromptSet):
    _assert_one_of_two([judge_prompt(FN, golden, key) for key in KEYS], "judge_ab.txt", "judge_ba.txt")


def test_golden_concepts_prompt(golden: PromptSet):
    snippet = "def first(xs):\n    return xs[0]\n"
    prompts = [concepts_prompt(snippet, golden, key) for key in KEYS]
    _assert_one_of_two(prompts, "concepts_ab.txt", "concepts_ba.txt")


def test_golden_instruct_prompt(golden: PromptSet):
    prompts = [
        instruct_prompt(["indexing", " lists "], "class implementation", "easy", golden, key)
        for key in KEYS
    ]
    _assert_one_of_two(prompts, "instruct_ab.txt", "instruct_ba.txt")


def test_golden_respond_prompt(golden: PromptSet):
    assert respond_prompt("Write `sq(x)` returning x squared.", golden, "k") == _golden_text("respond.txt")


def test_golden_versions(golden: PromptSet):
    assert [prompt_version(kind, golden) for kind in KINDS] == [
        "judge-golden",
        "oss-golden",
        "oss-golden",
        "respond-golden",
    ]


# --- the examples themselves -------------------------------------------------------

def _example_responses() -> list[tuple[str, str]]:
    cfg = load_prompts()
    found = [(f"oss-{i + 1:02d}", ex.response) for i, ex in enumerate(cfg.oss.examples)]
    return [*found, *((f"respond-{i + 1:02d}", ex.response) for i, ex in enumerate(cfg.respond.examples))]


@pytest.mark.parametrize(("name", "response"), _example_responses(), ids=lambda v: v if len(v) < 12 else "")
def test_every_example_response_runs_with_its_tests(tmp_path: Path, name: str, response: str):
    parsed = parse_response(response)
    assert parsed.missing == []
    script = tmp_path / f"{name}.py"
    script.write_text(program_for(parsed) + "\nprint('EXAMPLE-OK')\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("EXAMPLE-OK")
    assert "assert" in parsed.tests


def test_every_snippet_and_judge_example_is_valid_python(real: PromptSet):
    for example in real.oss.examples:
        ast.parse(example.snippet)
    for example in real.judge.examples:
        tree = ast.parse(example.code)
        function = tree.body[0]
        assert isinstance(function, ast.FunctionDef) and ast.get_docstring(function)


def test_the_docstring_is_split_off_the_code():
    code = '@cache\ndef f(a):\n    """Sum it.\n\n    Details.\n    """\n    return a\n'
    assert split_docstring(code) == ("Sum it.\n\nDetails.", "@cache\ndef f(a):\n    return a\n")
    # A body that is only the docstring stays valid code.
    assert split_docstring('def g():\n    """Only."""\n') == ("Only.", "def g():\n    ...\n")
    for unsplittable in ('def h(): "x"; return 1\n', "x = 1\n", "def (:\n", 'def k():\n    return 1\n'):
        assert split_docstring(unsplittable) == ("", unsplittable)


# --- the SFT template --------------------------------------------------------------------

def test_sft_template_puts_the_instruction_before_the_response_verbatim():
    template = load_sft_template()
    instruction, response = "Sort {a} and {b}.", "```python\ndef f(): return {}\n```"
    text = template.render(instruction, response)
    assert text.startswith(template.prompt(instruction)) and text.endswith(response)
    assert instruction in template.prompt(instruction)  # braces in code are not format fields


@pytest.mark.parametrize(("body", "message"), [
    ("## Task\n{instruction}\n", "must hold {response} exactly once"),
    ("{instruction}\n{response}\n{response}", "must hold {response} exactly once"),
    ("{response}\n{instruction}", "must end with {response}"),
    ("{instruction} {response} trailing words", "must end with {response}"),
])
def test_sft_template_errors_name_the_file_and_the_rule(tmp_path, body, message):
    (tmp_path / "sft_template.yaml").write_text(yaml.safe_dump({"version": "t1", "template": body}))
    with pytest.raises(PromptConfigError, match=re.escape(message)) as err:
        load_sft_template(tmp_path)
    assert "sft_template.yaml" in str(err.value)
