"""Operator-facing failure lines: root causes, hints, and a Spark-less install."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobs.core.failures import describe_failure, root_cause
from tests.paths import REPO


def test_root_cause_is_the_innermost_python_cause_on_one_line():
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as inner:
            raise RuntimeError("write failed\nwith a long trace") from inner
    except RuntimeError as exc:
        assert root_cause(exc) == "OSError: [Errno 28] No space left on device"
        line = describe_failure("extract", exc)
    assert line.startswith("stage 'extract' failed: OSError: [Errno 28] No space left on device (")
    assert "free space where lake.root lives" in line and "\n" not in line


def test_unknown_causes_get_no_hint():
    assert describe_failure("dedup", ValueError("odd")) == "stage 'dedup' failed: ValueError: odd"


# A fresh interpreter: in this one, Spark modules are already imported by other tests.
WITHOUT_PYSPARK = """
import builtins, sys
real_import = builtins.__import__
def without_pyspark(name, *args, **kwargs):
    if name == "pyspark" or name.startswith("pyspark."):
        raise ModuleNotFoundError("No module named 'pyspark'", name="pyspark")
    return real_import(name, *args, **kwargs)
builtins.__import__ = without_pyspark
from jobs.cli import main
main(["status"])
"""


def test_missing_pyspark_is_one_line_saying_what_to_install(tmp_path):
    result = subprocess.run([sys.executable, "-c", WITHOUT_PYSPARK], cwd=tmp_path, env={
        **os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "selfalign: error: pyspark is not installed: on a cluster, run under its Spark; "
        "locally, pip install 'selfalign[spark]'")
    assert not (tmp_path / "lake").exists()


def test_an_unexpected_error_in_any_command_is_one_line_and_exit_1(capsys, monkeypatch):
    from jobs.cli import guarded

    def broken() -> int:
        raise ValueError("invalid literal for int() with base 10: '11-20'")

    monkeypatch.delenv("SELFALIGN_TRACE", raising=False)
    assert guarded(broken, "report") == 1
    err = capsys.readouterr().err
    assert err == ("selfalign: error: report failed: ValueError: invalid literal for int() with base 10: "
                   "'11-20' (SELFALIGN_TRACE=1 shows the traceback)\n")
    monkeypatch.setenv("SELFALIGN_TRACE", "1")
    with pytest.raises(ValueError):
        guarded(broken, "report")
