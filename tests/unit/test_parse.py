"""udfs.parse: reading back judge answers, concepts, instructions and responses.

Every expected value below is written by hand from the documented format.
"""

from __future__ import annotations

import pytest

from schemas.outcome import Reason
from udfs.parse import (
    ASSERTIONS,
    MARKERS,
    RESPONSE_OPENING,
    SECTIONS,
    ParsedResponse,
    checks_anything,
    clean_response,
    defined_function_names,
    parse_concepts,
    parse_instruction,
    parse_judge,
    parse_response,
    program_for,
    split_sections,
    unrunnable_reason,
)

# --- judge ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", True),
        ("yes.", True),
        (" NO", False),
        ("Maybe", None),
        ("", None),
        (None, None),
        ("   \n  ", None),
        (" Yes\nReason: it lists the arguments", True),
        ("\n\nNo", False),
        ("**No**", False),
        ("YES!", True),
        ("No, the docstring is a template.", False),
        ("Yes, no surprises in it", True),
        ("Answer: yes", True),
        ("Yes/No", None),
        ("yes or no", None),
        ("No / no", False),
        ("Yesterday", None),
        ("Nope", None),
        ("I think yes", None),
    ],
)
def test_parse_judge(text: str | None, expected: bool | None):
    assert parse_judge(text) is expected


@pytest.mark.parametrize(
    ("text", "first_word", "count"),
    [
        (" Yes", True, True),
        (" No", False, False),
        (" Yes, I know", True, False),  # "know" holds "no": one each, and a tie is No
        (" Yes, no", True, False),
        (" yes yes no", True, True),
        (" Nope", None, False),
        (" None", None, False),
        (" Not sure, yes", None, False),  # "not" holds "no"
        ("Yesterday", None, True),  # "yes" inside a word counts
        (" Perhaps", None, False),  # neither: a tie at 0, No
        ("", None, False),
        (None, None, False),
    ],
)
def test_judge_decision_count_is_the_published_rule(text: str | None, first_word: bool | None, count: bool):
    """filter_dataset.py:354-364: Yes when "yes" occurs more often than "no" in the
    lower-cased answer, as substrings; never unparseable."""
    assert parse_judge(text) is first_word
    assert parse_judge(text, "count") is count


# --- concepts ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" recursion, memoization, dynamic programming", ["recursion", "memoization", "dynamic programming"]),
        (" loops ,  Loops, recursion,, ", ["loops", "recursion"]),
        ("", []),
        ("   ", []),
        (None, []),
        (" , ,", []),
        ("hashing, sets\n\n=== Example 9 ===\nCode:\n```python", ["hashing", "sets"]),
        ("hashing, sets\n=== Example 9 ===", ["hashing", "sets"]),
        ("- bit masks\n- bitwise   operators.", ["bit masks", "bitwise operators"]),
        ("Concepts: queues, deque", ["queues", "deque"]),
        ("str.join, f-strings;", ["str.join", "f-strings"]),
        ("graphs, BFS\nextra line, graphs", ["graphs", "BFS", "extra line"]),
    ],
)
def test_parse_concepts(text: str | None, expected: list[str]):
    assert parse_concepts(text) == expected


# --- instruction --------------------------------------------------------------------

def test_parse_instruction_strips_and_keeps_inner_layout():
    text = "Write `double(x)` that returns twice x.\n\n```python\ndef double(x):\n    ...\n```\n"
    assert parse_instruction(text) == (
        "Write `double(x)` that returns twice x.\n\n```python\ndef double(x):\n    ...\n```"
    )


def test_parse_instruction_cuts_a_leaked_next_example():
    text = "Write a function that sorts words by length.\n\n=== Example 9 ===\nConcepts: a, b\n"
    assert parse_instruction(text) == "Write a function that sorts words by length."


def test_parse_instruction_drops_an_echoed_label():
    assert parse_instruction("Task: Write a function that sums a list.") == "Write a function that sums a list."


@pytest.mark.parametrize("text", ["", "   \n", None, "Do it.", "=== Example 9 ===\nTask: x"])
def test_parse_instruction_rejects_empty_or_tiny_output(text: str | None):
    assert parse_instruction(text) is None


# --- responses ----------------------------------------------------------------------

WELL_FORMED = """## Reasoning
Add the numbers pairwise.
## Implementation
```python
def add(a, b):
    return a + b
```
## Explanation
Plus is commutative.
## Tests
```python
assert add(1, 2) == 3
assert add(-1, 1) == 0
```
"""

CODE = "def add(a, b):\n    return a + b"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0"


def test_parse_well_formed_response():
    parsed = parse_response(WELL_FORMED)
    assert parsed == ParsedResponse(
        reasoning="Add the numbers pairwise.",
        code=CODE,
        explanation="Plus is commutative.",
        tests=TESTS,
        missing=[],
    )
    assert parsed.runnable
    assert program_for(parsed) == CODE + "\n\n" + TESTS


def test_a_raw_completion_starts_inside_the_reasoning():
    # The respond prompt ends on "## Reasoning\n", so the model's text has no such heading.
    completion = WELL_FORMED.removeprefix(RESPONSE_OPENING)
    assert parse_response(completion) == parse_response(WELL_FORMED)
    assert parse_response(RESPONSE_OPENING + completion) == parse_response(WELL_FORMED)


def test_missing_tests_section():
    text = WELL_FORMED.split("## Tests")[0]
    parsed = parse_response(text)
    assert parsed.missing == ["tests"]
    assert parsed.code == CODE and parsed.tests == ""
    assert not parsed.runnable
    with pytest.raises(ValueError, match=r"missing: tests"):
        program_for(parsed)


def test_tests_section_without_a_code_block_is_missing_tests():
    text = WELL_FORMED.split("## Tests")[0] + "## Tests\nI would test it with a few numbers.\n"
    assert parse_response(text).missing == ["tests"]


def test_missing_code():
    text = "## Reasoning\nEasy.\n## Explanation\nNothing to add.\n## Tests\n```python\nassert True\n```\n"
    parsed = parse_response(text)
    assert parsed.missing == ["code"]
    assert parsed.tests == "assert True"
    with pytest.raises(ValueError, match=r"missing: code"):
        program_for(parsed)


def test_implementation_without_a_fence_is_missing_code():
    text = WELL_FORMED.replace("```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b): return a + b")
    assert parse_response(text).missing == ["code"]


def test_empty_or_none_response_is_all_missing():
    assert parse_response("").missing == ["reasoning", "code", "explanation", "tests"]
    assert parse_response(None).missing == ["reasoning", "code", "explanation", "tests"]


MESSY = """Sure! Here is my answer.
=== Response ===
## Reasoning
Add the numbers pairwise.

## Implementation
Here is the code:
```py
def add(a, b):
    return a + b
```

## Explanation
Plus is commutative.

### tests:
```python
assert add(1, 2) == 3
assert add(-1, 1) == 0
"""

LEAK = """

=== Task ===
Write `sub(a, b)`.

=== Response ===
## Reasoning
Subtract.
## Implementation
```python
def sub(a, b):
    return a - b
```
"""


def test_messy_response_chatter_before_missing_final_fence():
    parsed = parse_response(MESSY)
    assert parsed.missing == []
    assert parsed.reasoning == "Add the numbers pairwise."
    assert parsed.code == CODE
    assert parsed.tests == TESTS


def test_messy_response_ignores_a_leaked_next_example():
    parsed = parse_response(WELL_FORMED + LEAK)
    assert parsed == parse_response(WELL_FORMED)
    parsed = parse_response(MESSY.rstrip("\n") + "\n```" + LEAK)
    assert parsed.tests == TESTS and "sub" not in parsed.code


def test_windows_newlines_and_heading_variants():
    text = WELL_FORMED.replace("## Implementation", "### IMPLEMENTATION").replace("\n", "\r\n")
    assert parse_response(text) == parse_response(WELL_FORMED)


def test_several_and_indented_blocks_are_joined_and_dedented():
    text = (
        "## Reasoning\nTwo helpers.\n## Implementation\n"
        "```python\ndef a():\n    return 1\n```\nand\n"
        "    ```python\n    def b():\n        return 2\n    ```\n"
        "## Explanation\nFine.\n## Tests\n```python\nassert a() + b() == 3\n```"
    )
    assert parse_response(text).code == "def a():\n    return 1\n\ndef b():\n    return 2"


def test_first_occurrence_of_a_section_wins():
    text = WELL_FORMED + "## Tests\n```python\nassert False\n```\n"
    assert parse_response(text).tests == TESTS


def test_headings_must_be_whole_lines():
    # "## Tests" inside prose is not a heading; a comment line "# Tests" is not one either.
    text = WELL_FORMED.replace("Plus is commutative.", "Plus is commutative; see ## Tests below.\n# Tests")
    assert parse_response(text).explanation == "Plus is commutative; see ## Tests below.\n# Tests"


def test_split_sections_orders_and_names():
    assert list(split_sections(WELL_FORMED)) == list(SECTIONS)
    assert list(MARKERS.values()) == ["## Reasoning", "## Implementation", "## Explanation", "## Tests"]


# --- clean_response -------------------------------------------------------------------

def test_clean_response_drops_headings_and_keeps_prose_and_code():
    expected = """Add the numbers pairwise.

```python
def add(a, b):
    return a + b
```

Plus is commutative.

```python
assert add(1, 2) == 3
assert add(-1, 1) == 0
```"""
    assert clean_response(WELL_FORMED) == expected
    assert clean_response(WELL_FORMED.removeprefix(RESPONSE_OPENING)) == expected


def test_clean_response_of_a_messy_response():
    expected = """Add the numbers pairwise.

Here is the code:
```py
def add(a, b):
    return a + b
```

Plus is commutative.

```python
assert add(1, 2) == 3
assert add(-1, 1) == 0
```"""
    assert clean_response(MESSY) == expected
    assert clean_response(MESSY + "```" + LEAK) == expected


def test_clean_response_skips_missing_sections():
    text = "## Reasoning\nShort.\n## Implementation\n```python\nx = 1\n```\n"
    assert clean_response(text) == "Short.\n\n```python\nx = 1\n```"
    assert clean_response("") == ""


# --- tests that cannot fail -------------------------------------------------------------

@pytest.mark.parametrize(
    ("tests", "checks"),
    [
        ("assert add(1, 2) == 3", True),
        ("class TestAdd(unittest.TestCase):\n    def test_it(self):\n        pass", True),
        ("self.assertEqual(add(1, 2), 3)", True),
        ("np.testing.assert_allclose(add(1.0, 2.0), 3.0)", True),
        ("with pytest.raises(TypeError):\n    add(1, None)", True),
        ("def test():\n    if add(1, 2) != 3:\n        raise ValueError\n", False),
        ("print(add(1, 2))\nprint(add(-1, 1))", False),
        ("result = add(1, 2)", False),
        ("this is not python (", True),  # the sandbox judges it: a fail, not a no_tests
    ],
)
def test_checks_anything(tests: str, checks: bool):
    assert checks_anything(tests) is checks


def test_tests_that_only_print_are_a_no_tests_reject_and_never_run():
    text = WELL_FORMED.replace("assert add(1, 2) == 3\nassert add(-1, 1) == 0", "print(add(1, 2))")
    parsed = parse_response(text)
    assert parsed.missing == [ASSERTIONS] and not parsed.runnable
    assert unrunnable_reason(parsed)["reject_reason"] == Reason.NO_TESTS
    with pytest.raises(ValueError):
        program_for(parsed)


def test_missing_parts_win_over_no_tests():
    parsed = parse_response(WELL_FORMED.split("## Implementation")[0] + "## Tests\n```python\nprint(1)\n```\n")
    assert unrunnable_reason(parsed) == {"reject_reason": Reason.RESPONSE_MISSING_PARTS,
                                         "reject_detail": "missing code"}


# --- function-name diversification's key -----------------------------------------------

def test_defined_function_names_are_the_top_level_functions_sorted():
    code = (
        "import math\n\n"
        "def zeta(x):\n    def inner():\n        return 1\n    return inner()\n\n"
        "async def fetch(url):\n    return url\n\n"
        "class Box:\n    def size(self):\n        return 0\n\n"
        "def alpha():\n    return math.pi\n"
    )
    # Nested functions and methods are not the response's interface: left out.
    assert defined_function_names(code) == "alpha,fetch,zeta"


@pytest.mark.parametrize("code", ["", None, "class Only:\n    pass\n", "def broken(:\n"])
def test_code_without_top_level_functions_or_unparsable_has_no_key(code):
    assert defined_function_names(code) == ""
