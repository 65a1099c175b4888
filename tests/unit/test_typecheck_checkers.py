"""typecheck.checker: basedpyright and ty against the real tools (pyright's own cases are
in test_typecheck.py). Each setting costs one process per checker: basedpyright starts
node like pyright (about 2 s), ty a Rust binary (tens of ms)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs.core.config import load_config
from jobs.core.failures import StageError
from udfs.checkers import CHECKERS, RULE_CRASH, CheckOptions
from udfs.typecheck import Verdict, check_batch, function_source

TIMEOUT_S = 120.0
OTHERS = ("basedpyright", "ty")
VERSIONS = {"basedpyright": "1.40.2", "ty": "1.2.0"}

# name -> (imports, code); the planted errors are on line 4 (no imports, a blank line, def).
CASES: dict[str, tuple[str, str]] = {
    "clean": ("import re", "def words(s: str) -> list[str]:\n    return re.findall(r'\\w+', s)"),
    "str_plus_int": ("", 'def bad(x: int) -> str:\n    return "a" + 1'),
    "undefined": ("", "def call(x):\n    return helper(x)"),
    "unresolvable": ("import numpy_that_is_not_installed as npx", "def norm(x):\n    return npx.sqrt(x)"),
    # basedpyright's "recommended" mode (its default) makes a bare `list` an error
    # (reportMissingTypeArgument) and so is a possibly unbound name; "basic" does not.
    "basedpyright_only": (
        "",
        "def count(a: list, flag: bool) -> int:\n    if flag:\n        n = len(a)\n    return n",
    ),
    # In typeshed's third-party stubs, which pyright bundles and ty is given (udfs/checkers/ty_cli.py).
    "stubbed_yaml": ("import yaml", "def load(x: int):\n    return yaml.safe_load(x)"),
}


def items(*names: str) -> list[tuple[str, str]]:
    return [(name, function_source(*CASES[name])) for name in names]


@pytest.fixture(scope="module", params=OTHERS)
def checker(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def default_verdicts(checker: str) -> dict[str, Verdict]:
    return check_batch(items(*CASES), TIMEOUT_S, CheckOptions(checker=checker))


def test_clean_function_passes(default_verdicts: dict[str, Verdict]) -> None:
    assert default_verdicts["clean"] == Verdict(passed=True)


def test_planted_type_error_fails_with_a_rule_and_line(checker: str, default_verdicts: dict[str, Verdict]) -> None:
    rules = {"basedpyright": ("reportOperatorIssue", "reportUndefinedVariable"),
             "ty": ("unsupported-operator", "unresolved-reference")}[checker]
    for name, rule in zip(("str_plus_int", "undefined"), rules, strict=True):
        got = default_verdicts[name]
        assert (got.passed, got.rule, got.line) == (False, rule, 4), name
        assert got.message and "\n" not in got.message


def test_unresolvable_import_passes_under_the_default_policy(default_verdicts: dict[str, Verdict]) -> None:
    assert default_verdicts["unresolvable"].passed


def test_stubbed_third_party_package_is_checked(default_verdicts: dict[str, Verdict]) -> None:
    assert not default_verdicts["stubbed_yaml"].passed


def test_basedpyright_only_rules_stay_off(default_verdicts: dict[str, Verdict]) -> None:
    assert default_verdicts["basedpyright_only"].passed


def test_published_settings_make_an_unresolvable_import_an_error(checker: str) -> None:
    published = check_batch(items("unresolvable", "clean"), TIMEOUT_S, CheckOptions("3.11", "standard", "error", checker))
    rule = {"basedpyright": "reportMissingImports", "ty": "import-not-found"}[checker]
    assert (published["unresolvable"].passed, published["unresolvable"].rule,
            published["unresolvable"].line) == (False, rule, 1)
    assert published["clean"].passed


def test_basedpyright_flags_the_probe_in_its_own_default_mode() -> None:
    """Proves the probe above means something: "recommended" is what basic turns off."""
    got = check_batch(items("basedpyright_only"), TIMEOUT_S, CheckOptions("3.11", "recommended", "none", "basedpyright"))
    assert got["basedpyright_only"].rule == "reportMissingTypeArgument"


def test_settings_record_the_selected_checker_and_its_version(checker: str) -> None:
    from jobs.stages.typecheck import outcome, settings

    cfg = load_config(None, [f"typecheck.checker={checker}"])
    got = settings(SimpleNamespace(cfg=cfg, tasks=2))  # pyright: ignore[reportArgumentType]
    assert got.checker_version == VERSIONS[checker]
    row = outcome("f1", Verdict(passed=True), checker, got.checker_version)
    assert (row["checker"], row["pyright_version"]) == (checker, VERSIONS[checker])


@pytest.mark.parametrize("name", ["pyright", *OTHERS])
def test_a_missing_checker_is_one_line_naming_how_to_install_it(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from jobs.stages.typecheck import settings

    # Nothing beside this (fake) interpreter, nothing on PATH.
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    cfg = load_config(None, [f"typecheck.checker={name}"])
    with pytest.raises(StageError) as raised:
        settings(SimpleNamespace(cfg=cfg, tasks=2))  # pyright: ignore[reportArgumentType]
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"typecheck: {name} not found")
    assert CHECKERS[name].install_hint in message


def test_ty_reports_how_many_files_it_checked(tmp_path: Path) -> None:
    ty = CHECKERS["ty"]
    ty.write_config(tmp_path, CheckOptions(checker="ty"))
    for name, source in items("clean", "str_plus_int"):
        (tmp_path / f"f_{name}.py").write_text(source)
    run = ty.run(tmp_path, TIMEOUT_S)
    assert (run.failure, run.files_analyzed) == (None, 2)
    assert [d.file for d in run.diagnostics] == ["f_str_plus_int.py"]


@pytest.mark.parametrize(("stdout", "code"), [(b"thread panicked", 101), (b"", 0), (b'{"runs": []}', 1),
                                              (b'{"runs": [{"results": []}]}', 2)])
def test_ty_bad_exit_or_unreadable_output_is_a_crash(stdout: bytes, code: int) -> None:
    assert CHECKERS["ty"].parse(stdout, code).failure == RULE_CRASH


def test_a_function_that_crashes_ty_is_isolated_and_the_rest_keep_their_verdicts() -> None:
    # A 20,000-term sum overflows ty's stack (exit -6): a real crash, no simulated one.
    chain = "def total(x):\n    return " + " + ".join(["x"] * 20_000) + "\n"
    got = check_batch([("chain", chain), *items("clean", "str_plus_int")], TIMEOUT_S, CheckOptions(checker="ty"))
    assert (got["chain"].passed, got["chain"].rule) == (False, RULE_CRASH)
    assert got["clean"].passed and got["str_plus_int"].rule == "unsupported-operator"
