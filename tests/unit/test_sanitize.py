"""The published sanitizing step, choice by choice, and its determinism per instruction id."""

from __future__ import annotations

from collections import Counter

from udfs.sanitize import SanitizeOptions, sanitize, strip_comments, top_level_asserts

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
