"""The published sanitizing step, choice by choice, and its determinism per instruction id."""

from __future__ import annotations

from collections import Counter

import pytest

from udfs.sanitize import (
    SanitizeOptions,
    published_layout,
    sanitize,
    strip_comments,
    top_level_asserts,
)

RESPONSE = '''## Reasoning
Scan once, keeping a running maximum.

## Implementation
```python
def peak(values):  # the largest value
    """The largest value; ValueError when empty."""
    # an empty list has no peak
    if not values:
        raise ValueError("empty")
    best = values[0]
    for value in values[1:]:
        best = max(best, value)  # keep the larger
    return best
```

## Explanation
One pass, O(n) time and O(1) memory.

## Tests
```python
assert peak([1]) == 1
assert peak([3, 9, 2]) == 9
assert peak([-5, -2]) == -2  # negatives
assert peak([0, 0]) == 0
assert peak([7, 1, 7]) == 7
assert peak([2, 4, 6, 8]) == 8
```
'''
INSTRUCTION = "Write `peak(values)` returning the largest value of a non-empty list."


def test_comments_go_and_strings_with_hashes_stay():
    code = 'x = "#not a comment"  # a comment\n# alone\ny = 2\n'
    assert strip_comments(code) == 'x = "#not a comment"\ny = 2\n'
    assert strip_comments("def (:\n  # broken") == "def (:\n  # broken"


def test_top_level_asserts_as_written():
    assert top_level_asserts("assert f(1) == 2\nx = 1\nassert g()  # why\n") == ["assert f(1) == 2", "assert g()"]
    assert top_level_asserts("not python (") == []


def test_the_same_instruction_id_makes_the_same_choices():
    first = sanitize(INSTRUCTION, RESPONSE, "id-1", seed=3)
    assert first == sanitize(INSTRUCTION, RESPONSE, "id-1", seed=3)
    others = {repr(sanitize(INSTRUCTION, RESPONSE, f"id-{i}", seed=3).choices) for i in range(40)}
    assert len(others) > 4


def test_choices_follow_the_published_probabilities():
    runs = [sanitize(INSTRUCTION, RESPONSE, f"k{i}") for i in range(1000)]
    counts = Counter()
    for run in runs:
        choices = run.choices
        counts["reasoning"] += choices["reasoning_dropped"]
        counts["explanation"] += choices["explanation_dropped"]
        counts["moved"] += choices["asserts_in_instruction"] > 0
        assert 0 <= choices["asserts_in_instruction"] <= 5
        assert ("Scan once" in run.response) != choices["reasoning_dropped"]
        assert ("One pass" in run.response) != choices["explanation_dropped"]
        assert "#" not in run.response and "def peak(values):\n" in run.response
        assert "assert" not in run.response  # tests go: the instruction does not ask for them
        moved = choices["asserts_in_instruction"]
        if moved:
            label = "assertion:" if moved == 1 else "assertions:"
            assert f"\n\nYour code should pass the following {label}\n```python\nassert peak([1]) == 1" in run.instruction
            assert run.instruction.count("\nassert ") == moved
        else:
            assert run.instruction == INSTRUCTION
    for name in ("reasoning", "explanation", "moved"):
        assert 420 < counts[name] < 580, (name, counts)
    assert {run.choices["asserts_in_instruction"] for run in runs} == {0, 1, 2, 3, 4, 5}


def test_tests_stay_when_the_instruction_asks_for_them():
    done = sanitize(INSTRUCTION + " Include unit tests.", RESPONSE, "k", options=SanitizeOptions(0, 0))
    assert done.choices["tests_kept"] and "assert peak([3, 9, 2]) == 9\n" in done.response
    assert "# negatives" not in done.response


def test_placeholder_code_is_reported_for_dropping():
    stub = RESPONSE.replace('        raise ValueError("empty")', "        raise NotImplementedError")
    assert sanitize(INSTRUCTION, stub, "k").placeholder == "NotImplementedError"
    todo = RESPONSE.replace("best = values[0]", "best = values[0]  # TODO: faster")
    assert sanitize(INSTRUCTION, todo, "k").placeholder == "TODO"
    assert sanitize(INSTRUCTION, RESPONSE, "k").placeholder is None


# --- the published style (select.sanitize.style: published) -----------------------------

PUBLISHED = SanitizeOptions(style="published")
ALWAYS_MOVE = SanitizeOptions(drop_probability=0.0, assert_probability=1.0, style="published")


def test_published_drops_a_placeholder_anywhere_in_the_response():
    # selfalign looks at the code only; published, prose counts too (and "todo" is any
    # substring, lower-cased).
    noted = RESPONSE.replace("One pass, O(n)", "A Todo: vectorize. One pass, O(n)")
    assert sanitize(INSTRUCTION, noted, "k").placeholder is None
    assert sanitize(INSTRUCTION, noted, "k", options=PUBLISHED).placeholder == "todo"
    assert sanitize(INSTRUCTION, RESPONSE, "k", options=PUBLISHED).placeholder is None


def test_published_keeps_tests_when_test_occurs_anywhere_in_the_instruction():
    latest = "Write `peak(values)`: the latest maximum of a non-empty list."
    assert not sanitize(latest, RESPONSE, "k", options=SanitizeOptions(0, 0)).choices["tests_kept"]
    done = sanitize(latest, RESPONSE, "k", options=SanitizeOptions(0, 0, style="published"))
    assert done.choices["tests_kept"] and "assert peak([3, 9, 2]) == 9\n" in done.response


def test_published_removes_whole_comment_lines_only():
    done = sanitize(INSTRUCTION, RESPONSE, "k", options=ALWAYS_MOVE)
    assert "# an empty list has no peak" not in done.response
    assert "def peak(values):  # the largest value\n" in done.response  # inline comments stay
    assert "best = max(best, value)  # keep the larger" in done.response


def test_a_blank_line_before_a_comment_line_goes_with_it():
    code = "x = 1\n\n# why\ny = 2\n"
    response = RESPONSE.replace('    """The largest value; ValueError when empty."""\n', "").replace(
        "## Implementation\n```python\n", "## Implementation\n```python\n" + code)
    done = sanitize(INSTRUCTION, response, "k", options=ALWAYS_MOVE)
    assert "x = 1\ny = 2\n" in done.response


def test_published_moves_a_sample_of_assert_lines_from_an_all_assert_block():
    moved = set()
    for index in range(60):
        done = sanitize(INSTRUCTION, RESPONSE, f"k{index}", options=ALWAYS_MOVE)
        block = done.instruction.split("```python\n", 1)[1].rsplit("\n```", 1)[0].splitlines()
        assert 1 <= len(block) <= 5 and all(line in RESPONSE.splitlines() for line in block)
        moved.add(len(block))
        # Drawn anywhere in the block, not only its first lines.
        assert done.choices["asserts_in_instruction"] == len(block)
    assert moved == {1, 2, 3, 4, 5}


MIXED_TESTS = "values = [3, 9, 2]\nassert peak(values) == 9\n"


def _with_tests(tests: str) -> str:
    start = RESPONSE.index("## Tests")
    return RESPONSE[:start] + f"## Tests\n```python\n{tests}```\n"


def test_published_moves_a_short_mixed_block_whole_as_a_test_case():
    done = sanitize(INSTRUCTION, _with_tests(MIXED_TESTS), "k", options=ALWAYS_MOVE)
    assert done.instruction.endswith(
        "Your code should pass the following test case:\n```python\n" + MIXED_TESTS.strip() + "\n```")
    # selfalign moves top-level asserts only, and never the setup line.
    ours = sanitize(INSTRUCTION, _with_tests(MIXED_TESTS), "k",
                    options=SanitizeOptions(0.0, 1.0, style="selfalign"))
    assert "values = [3, 9, 2]" not in ours.instruction


def test_published_never_moves_a_long_mixed_block_or_into_an_instruction_with_examples():
    long_block = "values = [3, 9, 2]\n" + "".join(f"assert peak(values + [{n}]) >= {n}\n" for n in range(5))
    assert sanitize(INSTRUCTION, _with_tests(long_block), "k", options=ALWAYS_MOVE).choices[
        "asserts_in_instruction"] == 0
    for instruction in (INSTRUCTION + " For example, peak([1, 2]) is 2.",
                        INSTRUCTION + " It must assert its input.",
                        INSTRUCTION + " Add a test."):
        done = sanitize(instruction, RESPONSE, "k", options=ALWAYS_MOVE)
        assert done.instruction == instruction and done.choices["asserts_in_instruction"] == 0


@pytest.mark.parametrize(("response", "problem"), [
    (RESPONSE.replace("## Explanation\n", ""), "not the four sections"),
    (RESPONSE.replace("## Tests\n```python\n", "## Tests\n```\n"), "not exactly one python code block"),
    (RESPONSE + "\n```python\nassert peak([4]) == 4\n```\n", "not exactly one python code block"),
    (_with_tests("import math\ndef check():\n    assert peak([1]) == 1\n"), "assert nothing"),
])
def test_published_layout_problems(response, problem):
    layout = published_layout(response)
    assert isinstance(layout, str) and problem in layout
    assert sanitize(INSTRUCTION, response, "k", options=PUBLISHED).placeholder is not None


def test_published_layout_cuts_the_tests_after_their_block():
    layout = published_layout(RESPONSE + "\nThese cover empty and negative input.\n")
    assert not isinstance(layout, str)
    assert layout.sections["tests"].endswith("assert peak([2, 4, 6, 8]) == 8\n```")
