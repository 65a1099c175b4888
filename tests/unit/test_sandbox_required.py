"""Where a sandbox test's precondition is missing (bubblewrap, user namespaces, a cgroup of
the run's own), one decision says what happens (tests/conftest.py, sandbox_precondition):
a skip, or under SELFALIGN_REQUIRE_SANDBOX=1 (make test, so CI) a one-line failure. The
probe's result is given here, so the outcome does not depend on this machine."""

from __future__ import annotations

import pytest

from tests.conftest import REQUIRE_SANDBOX, sandbox_precondition
from tests.security import helpers

pytest_plugins = ["pytester"]

MISSING = "only bwrap hides the host file system; no 'bwrap' here: bubblewrap is not installed"


def test_required_and_missing_fails_with_the_reason_on_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(REQUIRE_SANDBOX, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        sandbox_precondition(MISSING)
    assert MISSING in str(failed.value) and REQUIRE_SANDBOX in str(failed.value)
    assert "\n" not in str(failed.value)


@pytest.mark.parametrize("setting", [None, "", "0"])
def test_not_required_and_missing_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                        setting: str | None):
    if setting is None:
        monkeypatch.delenv(REQUIRE_SANDBOX, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_SANDBOX, setting)
    with pytest.raises(pytest.skip.Exception) as skipped:
        sandbox_precondition(MISSING)
    assert str(skipped.value) == MISSING


@pytest.mark.parametrize("require", [True, False])
def test_nothing_missing_runs_the_test(require: bool):
    assert sandbox_precondition(None, require=require) is None


def test_a_weaker_level_chosen_on_purpose_skips_even_when_required():
    with pytest.raises(pytest.skip.Exception):
        sandbox_precondition(MISSING, deliberate=True, require=True)


@pytest.mark.parametrize(("level", "chosen", "root", "least", "expected"), [
    ("bwrap+cgroup", None, False, "bwrap+cgroup", "runs"),
    ("bwrap", None, False, "bwrap", "runs"),
    ("bwrap", None, True, "bwrap+cgroup", "machine lacks it"),  # root gives no cgroup
    ("process", None, False, "bwrap", "machine lacks it"),
    ("process", None, True, "netns", "machine lacks it"),  # needed, not root_suffices
    ("process", "process", False, "bwrap", "chosen weaker"),
    ("netns", "netns", True, "bwrap+cgroup", "chosen weaker"),
])
def test_the_marks_name_a_gap_from_the_level_under_test(
    monkeypatch: pytest.MonkeyPatch, level: str, chosen: str | None, root: bool, least: str,
    expected: str,
):
    monkeypatch.setattr(helpers, "LEVEL", level)
    monkeypatch.setattr(helpers, "CHOSEN", chosen)
    monkeypatch.setattr(helpers, "AS_ROOT", root)
    mark = helpers.needs(least, "what it checks").mark
    missing, deliberate = mark.args[0], mark.kwargs.get("deliberate", False)
    said = "runs" if missing is None else "chosen weaker" if deliberate else "machine lacks it"
    assert said == expected, mark
    if missing is not None:
        assert missing.startswith("what it checks") and "\n" not in missing


def test_root_suffices_where_the_mark_says_so(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(helpers, "LEVEL", "process")
    monkeypatch.setattr(helpers, "CHOSEN", None)
    monkeypatch.setattr(helpers, "AS_ROOT", True)
    assert helpers.needs("bwrap", "x", root_suffices=True).mark.args == (None,)
    monkeypatch.setattr(helpers, "AS_ROOT", False)
    assert helpers.needs("bwrap", "x", root_suffices=True).mark.args[0] is not None


# A test module as the security tests mark theirs, run by pytest with this suite's hooks
# (tests/conftest.py): the mark reaches the decision before the test's fixtures.
MARKED = f"""
import pytest

@pytest.fixture
def costly():
    raise AssertionError("a fixture ran before the precondition was decided")

@pytest.mark.sandbox({MISSING!r})
def test_missing(costly):
    pass

@pytest.mark.sandbox(None)
def test_present():
    pass

@pytest.mark.sandbox({MISSING!r}, deliberate=True)
def test_chosen_weaker():
    pass
"""


@pytest.mark.parametrize("require", ["1", None])
def test_a_marked_test_fails_or_skips_as_decided(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 require: str | None):
    if require is None:
        monkeypatch.delenv(REQUIRE_SANDBOX, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_SANDBOX, require)
    pytester.makeconftest("from tests.conftest import pytest_configure, pytest_runtest_setup\n")
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest("-rsE", "-p", "no:cacheprovider")
    if require:
        result.assert_outcomes(passed=1, errors=1, skipped=1)
        result.stdout.fnmatch_lines(["*ERROR at setup of test_missing*",
                                     f"{REQUIRE_SANDBOX}=1 and this machine lacks the sandbox: {MISSING}"])
    else:  # at the test's own line, as a skipif mark's skip is
        result.assert_outcomes(passed=1, skipped=2)
        result.stdout.fnmatch_lines([f"SKIPPED*test_marked.py:*: {MISSING}"])
    assert "a fixture ran" not in result.stdout.str()
