"""The published global cleaning: its keys and its first-come walk, worked out by hand."""

from __future__ import annotations

import pytest

from udfs.diversify import first_code_block, first_come, function_names_key, pair_keys


def respond(code: str, prose: str = "Plain reasoning.") -> str:
    """A cleaned response (sections in order, headings dropped) with this code."""
    return f"{prose}\n\n```python\n{code}\n```\n\nExplained.\n\n```python\nassert True\n```"


NESTED = (
    "def outer():\n    def inner():\n        return 1\n    return inner\n\n"
    "class Box:\n    def size(self):\n        return 0\n\n"
    "async def fetch():\n    return None\n"
)


def test_names_are_every_definition_in_depth_first_order():
    # Depth first: outer, then its inner, then Box's method, then fetch. A breadth-first
    # walk (ast.walk) would give "outer fetch inner size"; top level only, "outer fetch".
    assert function_names_key(respond(NESTED)) == "outer inner size fetch"


def test_the_first_code_block_is_the_first_anywhere_in_the_response():
    response = respond("def solve():\n    return 2", prose="Sketch:\n```\ndef sketch(): pass\n```")
    assert first_code_block(response) == "def sketch(): pass"
    assert function_names_key(response) == "sketch"


@pytest.mark.parametrize(("response", "key"), [
    (respond("x = 1"), ""),  # no function: the key "" (one such pair is kept over all)
    (respond("def broken(:\n    pass"), None),  # does not parse: the pair is dropped
    ("No code at all.", None),
    ("```python\ndef open_block():", None),  # an unclosed fence is no block
])
def test_keys_of_code_without_functions_or_that_does_not_parse(response, key):
    assert function_names_key(response) == key


def test_instruction_and_response_keys_ignore_every_whitespace_character():
    spaced = pair_keys("Write  parse_args\n", respond("def parse_args():\n    return 1"))
    tight = pair_keys("Writeparse_args", respond("def parse_args():\n  return 1"))
    assert spaced is not None and tight is not None
    assert spaced[0] == tight[0] and spaced[1] == tight[1]
    assert pair_keys("Write it", respond("def broken(:")) is None


# The published rule, walked by hand over ten pairs in their shuffled order. Each row:
# (pair, instruction id, instruction, code of its response, expected outcome).
PARSE = "def parse_args():\n    return []"
TABLE = [
    ("p1", "i1", "Write parse_args for a CLI.", PARSE, "kept"),
    ("p2", "i2", "Parse flags from argv.", PARSE, ("function_names", "i1")),  # same name list
    ("p3", "i1", "Write parse_args for a CLI.", "def cli():\n    return 0", ("instruction", "i1")),
    ("p4", "i3", "Write parse_args  for a\nCLI.", "def other():\n    return 0", ("instruction", "i1")),
    ("p5", "i4", "Run the main loop.", "def main():\n    def helper():\n        return 1\n    return helper()",
     "kept"),
    # The same names in another order are another key (selfalign's per-seed key is a set).
    ("p6", "i5", "Help, then run.", "def helper():\n    return 1\n\ndef main():\n    return helper()", "kept"),
    # p5's response word for word, under another instruction.
    ("p7", "i6", "Loop until done.", "def main():\n    def helper():\n        return 1\n    return helper()",
     ("response", "i4")),
    # i2's first pair was dropped, so its later pair may still be kept.
    ("p8", "i2", "Parse flags from argv.", "def tokenize(argv):\n    return argv", "kept"),
    ("p9", "i7", "Add two numbers.", "total = 1 + 2", "kept"),  # no function: key ""
    ("p10", "i8", "Multiply two numbers.", "product = 2 * 3", ("function_names", "i7")),
]


def test_the_walk_keeps_what_the_published_rule_keeps():
    pairs = []
    for pair, owner, instruction, code, _ in TABLE:
        # Every response reads differently but p7's, which repeats p5's word for word.
        prose = "Plain reasoning." if pair in ("p5", "p7") else f"Reasoning of {pair}."
        keys = pair_keys(instruction, respond(code, prose))
        assert keys is not None
        pairs.append((pair, owner, keys))
    outcome = {claim.item: "kept" if claim.kept else (claim.kind, claim.by) for claim in first_come(pairs)}
    assert outcome == {pair: expected for pair, _, _, _, expected in TABLE}
    # One response per instruction: i1 and i2 keep one each.
    kept_owners = [owner for pair, owner, *_ in TABLE if outcome[pair] == "kept"]
    assert len(kept_owners) == len(set(kept_owners))
