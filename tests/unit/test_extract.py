"""Pure extraction logic: no Spark."""

from __future__ import annotations

import textwrap

import pytest

from schemas.outcome import Reason
from udfs.extract import (
    FileReject,
    RuleSet,
    check_rules,
    extract_file,
    function_id,
    normalize_code,
)

MODULE = textwrap.dedent(
    '''
    import json
    import numpy as np
    from typing import List as L, Dict
    try:
        import yaml
    except ImportError:
        yaml = None

    CONSTANT = 3


    def total(values: L[int], scale=2):
        """Sum values, scaled."""
        return np.sum(values) * scale


    async def fetch(url, *, retries=3):
        """Fetch a URL."""
        return await url.get(retries)


    def undocumented(x):
        return x


    @staticmethod
    def decorated(
        a,
        b,
    ) -> Dict:
        """Multi-line signature."""
        out = json.dumps({a: b})
        return yaml.safe_load(out)


    class Widget:
        def method(self):
            """Not top level."""
            return 1
    '''
)

RULES = RuleSet(
    rules=("needs_return", "needs_args", "max_lines", "no_markers", "no_banned_imports"),
    max_lines=150,
    markers=("TODO", "FIXME", "bug"),
    banned_imports=frozenset({"os", "sys", "subprocess"}),
)


def by_name(content: str) -> dict:
    result = extract_file(content, 1_000_000)
    assert not isinstance(result, FileReject), result
    return {fn.name: fn for fn in result}


def test_keeps_only_documented_top_level_functions():
    assert set(by_name(MODULE)) == {"total", "fetch", "decorated"}


def test_function_facts():
    fns = by_name(MODULE)
    total = fns["total"]
    assert total.docstring == "Sum values, scaled."
    assert total.signature == "def total(values: L[int], scale=2):"
    assert total.arg_count == 2 and total.has_return and total.line_count == 3
    assert total.imports == "from typing import List as L\nimport numpy as np"
    assert total.modules == ["numpy", "typing"]
    assert fns["fetch"].arg_count == 2


def test_decorated_function_includes_decorator_and_joined_signature():
    fn = by_name(MODULE)["decorated"]
    assert fn.code.startswith("@staticmethod\ndef decorated(")
    assert fn.signature == "def decorated( a, b, ) -> Dict:"
    # imports under try/except at module level are carried too
    assert fn.imports.splitlines() == ["from typing import Dict", "import json", "import yaml"]


def test_function_id_ignores_trailing_whitespace_and_blank_lines():
    a = "def f(x):\n    return x\n"
    b = "def f(x):   \r\n\n    return x"
    assert normalize_code(a) == normalize_code(b)
    assert function_id(a) == function_id(b)
    assert function_id(a) != function_id("def f(y):\n    return y\n")


# A top-level function without a docstring: files that must reach the parser start with it.
DEF = "def g():\n    return 1\n"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, Reason.EMPTY_CONTENT),
        ("   \n\n", Reason.EMPTY_CONTENT),
        (b"\xff\xfe\x00bad", Reason.NOT_UTF8),
        ("\x01\x02\x03\x04" * 100, Reason.BINARY_CONTENT),
        (DEF + 'print "hello"\n', Reason.PYTHON2_SYNTAX),
        (DEF + "try:\n    pass\nexcept Exception, e:\n    pass\n", Reason.PYTHON2_SYNTAX),
        (DEF + 'x = "abc\n', Reason.UNTERMINATED_TOKEN),
        ('def f(a):\n    """doc\n    return a\n', Reason.UNTERMINATED_TOKEN),
        (DEF + "(" * 300 + ")" * 300, Reason.TOO_DEEPLY_NESTED),
        (DEF + "x = 1" + " + 1" * 100_000, Reason.TOO_DEEPLY_NESTED),
        (DEF + "\n".join(" " * i + "if x:" for i in range(101)) + "\n" + " " * 101 + "pass\n",
         Reason.TOO_DEEPLY_NESTED),
        ('def f(a):\n    "doc"\n    return a\x00\n', Reason.NUL_BYTES),
        ("def f(:\n  pass\n", Reason.SYNTAX_ERROR),
        ("x = 1\n", Reason.NO_DOCSTRING_FUNCTIONS),
        # No top-level def: dropped before parsing, even when it would not parse.
        ('print "hello"\n', Reason.NO_DOCSTRING_FUNCTIONS),
        ("class A:\n    def f(self):\n        \"\"\"doc\"\"\"\n        return 1\n", Reason.NO_DOCSTRING_FUNCTIONS),
        (DEF, Reason.NO_DOCSTRING_FUNCTIONS),
    ],
)
def test_bad_files_become_rejects(content, reason):
    result = extract_file(content, 1_000_000)
    assert isinstance(result, FileReject)
    assert result.reason == reason
    assert result.detail


def test_huge_file_is_rejected_before_parsing():
    content = "x = 1\n" * 200_000
    result = extract_file(content, 1_000_000)
    assert isinstance(result, FileReject) and result.reason == Reason.FILE_TOO_LARGE


def one(code: str):
    fns = extract_file(code, 1_000_000)
    assert not isinstance(fns, FileReject)
    return fns[0]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ('def f(a):\n    """d."""\n    print(a)\n', Reason.NO_RETURN_VALUE),
        ('def f(a):\n    """d."""\n    return\n', Reason.NO_RETURN_VALUE),
        ('def f(a):\n    """d."""\n    return None\n', Reason.NO_RETURN_VALUE),
        ('def f(a):\n    """d."""\n    def g():\n        return 1\n    g()\n', Reason.NO_RETURN_VALUE),
        ('def f():\n    """d."""\n    return 1\n', Reason.NO_ARGUMENTS),
        ('def f(a):\n    """d."""\n    # TODO: speed up\n    return a\n', Reason.HAS_MARKER),
        ('def f(a):\n    """Works around a bug in x."""\n    return a\n', Reason.HAS_MARKER),
        ('import os\ndef f(a):\n    """d."""\n    return os.path.join(a)\n', Reason.BANNED_IMPORT),
        ('def f(a):\n    """d."""\n    import subprocess\n    return subprocess.run(a)\n', Reason.BANNED_IMPORT),
    ],
)
def test_rules(code, reason):
    broken = check_rules(one(code), RULES, RULES.marker_pattern)
    assert broken is not None and broken[0] == reason


def test_rules_pass_a_good_function_and_respect_word_boundaries():
    code = 'import json\ndef debug_dump(data):\n    """Serialize data for debugging."""\n    return json.dumps(data)\n'
    assert check_rules(one(code), RULES, RULES.marker_pattern) is None


def test_too_long():
    body = "\n".join(f"    x{i} = {i}" for i in range(160))
    code = f'def f(a):\n    """d."""\n{body}\n    return a\n'
    broken = check_rules(one(code), RULES, RULES.marker_pattern)
    assert broken == (Reason.TOO_LONG, "163 lines > 150")


def test_rules_can_be_switched_off():
    only_args = RuleSet(("needs_args",), 150, (), frozenset())
    fn = one('def f(a):\n    """d."""\n    print(a)  # TODO\n')
    assert check_rules(fn, only_args, only_args.marker_pattern) is None


@pytest.mark.parametrize("prefix", ["", "\x0c", "async "])
def test_top_level_defs_after_a_form_feed_or_async_reach_the_parser(prefix):
    found = extract_file(f'x = 1\n{prefix}def f(a):\n    """Doc."""\n    return a\n', 1_000_000)
    assert isinstance(found, list)
    assert [fn.name for fn in found] == ["f"]


# --- the published reading of each rule (seed_gathering/filter_dataset.py) -----------------

PUBLISHED = RuleSet(
    rules=("needs_return", "needs_args", "max_lines", "no_markers", "no_banned_imports"),
    max_lines=150,
    markers=("todo", "fixme", "bug"),
    banned_imports=frozenset({"os", "sys", "subprocess"}),
    marker_match="substring",
    banned_import_match="substring",
    return_rule="any_value",
    no_args_match="text",
)


@pytest.mark.parametrize(
    ("code", "ours", "published"),
    [
        # "bug" inside "debug": a substring, not a word.
        ('def f(a):\n    """Return a debug view of a."""\n    return a\n', None, (Reason.HAS_MARKER, "contains 'bug'")),
        # The imports are read too: "todo" inside the module name todoist.
        ('import todoist\ndef f(a):\n    """d."""\n    return todoist.get(a)\n',
         None, (Reason.HAS_MARKER, "contains 'todo'")),
        # "import os" is a prefix of "import osgeo".
        ('import osgeo\ndef f(a):\n    """d."""\n    return osgeo.open(a)\n',
         None, (Reason.BANNED_IMPORT, "import os")),
        # Prose: "from sys" in the docstring.
        ('def f(a):\n    """Read options from sys-like mappings."""\n    return a\n',
         None, (Reason.BANNED_IMPORT, "from sys")),
        # Any `return <expr>` counts, a nested one included.
        ('def f(a):\n    """d."""\n    def g():\n        return 1\n    g()\n',
         (Reason.NO_RETURN_VALUE, "no `return <value>` in the function body"), None),
        # `return None` is a return statement with a value.
        ('def f(a):\n    """d."""\n    return None\n',
         (Reason.NO_RETURN_VALUE, "no `return <value>` in the function body"), None),
        # No parameters, but no line holds "():".
        ('def f() -> int:\n    """d."""\n    return 1\n', (Reason.NO_ARGUMENTS, "function takes no arguments"), None),
        ('async def f():\n    """d."""\n    return 1\n', (Reason.NO_ARGUMENTS, "function takes no arguments"), None),
        ('def f():\n    """d."""\n    return 1\n', (Reason.NO_ARGUMENTS, "function takes no arguments"),
         (Reason.NO_ARGUMENTS, "a line starts with 'def ' and holds '():'")),
    ],
)
def test_published_rule_readings_differ_from_ours(code, ours, published):
    fn = one(code)
    assert check_rules(fn, RULES, RULES.marker_pattern) == ours
    assert check_rules(fn, PUBLISHED, PUBLISHED.marker_pattern) == published


def test_published_substring_rules_still_pass_a_clean_function():
    code = 'import json\ndef dump(data):\n    """Serialize data as JSON text."""\n    return json.dumps(data)\n'
    assert check_rules(one(code), PUBLISHED, PUBLISHED.marker_pattern) is None


def test_no_markers_configured_matches_nothing():
    rules = RuleSet(("no_markers",), 150, (), frozenset(), marker_match="substring")
    assert check_rules(one('def f(a):\n    """d."""\n    return a\n'), rules, rules.marker_pattern) is None


def test_the_published_profile_reaches_the_rule_set():
    from jobs.core.config import load_config
    from jobs.stages.extract import rule_set

    default = rule_set(load_config(None).extract)
    published = rule_set(load_config(None, profiles=["published"]).extract)
    assert (default.marker_match, default.banned_import_match, default.return_rule, default.no_args_match) == (
        "word", "module", "own_value", "ast")
    assert (published.marker_match, published.banned_import_match, published.return_rule,
            published.no_args_match) == ("substring", "substring", "any_value", "text")
    assert published.markers == ("todo", "fixme", "bug")
