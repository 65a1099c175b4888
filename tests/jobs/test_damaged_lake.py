"""A lake that cannot be used names its culprit in one line, exit 2: the damaged table
and commit file and what to do, or a lake.root that cannot be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cli import main as cli_main
from jobs.core.failures import damaged_commit
from tests.paths import BENCHMARKS, REPO
from tests.stack_rows import stack_row, write_stack

GOOD = 'def double(x):\n    """Twice x."""\n    return x * 2\n'


def run_cli(tmp: Path, stages: str) -> int:
    pairs = [f"lake.root={tmp / 'lake'}", f"input.path={tmp / 'in'}", f"spark.ivy_dir={REPO / '.ivy'}",
             f"benchmarks.dir={BENCHMARKS}"]
    with pytest.raises(SystemExit) as done:
        cli_main(["run", "--stages", stages, "--no-status", *[a for p in pairs for a in ("--set", p)]])
    return int(done.value.code or 0)


@pytest.mark.spark
def test_a_cut_short_commit_names_the_table_and_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_stack(tmp_path / "in" / "a.parquet", [stack_row(GOOD, path="a.py")])
    assert run_cli(tmp_path, "extract") == 0
    log = tmp_path / "lake" / "functions" / "_delta_log"
    newest = sorted(log.glob("*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[:120])  # as a writer killed mid-commit leaves it
    for checksum in log.glob(f".{newest.name}.crc"):  # the local file system's own check
        checksum.unlink()
    capsys.readouterr()
    assert run_cli(tmp_path, "decontaminate") == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("selfalign: error:")]
    assert f"table {tmp_path / 'lake' / 'functions'} has a damaged commit _delta_log/{newest.name}" in line
    assert "move that file" in line


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("org.apache.hadoop.fs.ChecksumException: Checksum error: "
         "file:/lake/functions/_delta_log/00000000000000000003.json at 0",
         ("/lake/functions", "00000000000000000003.json")),
        ("JsonEOFException: Unexpected end-of-input ... at s3a://bucket/lake/runs/_delta_log/"
         "00000000000000000012.json", ("s3a://bucket/lake/runs", "00000000000000000012.json")),
        # A commit file named in a failure that is not about reading it.
        ("ConcurrentAppendException: /lake/functions/_delta_log/00000000000000000003.json", None),
        ("JsonEOFException: Unexpected end-of-input in an input file", None),
    ],
)
def test_which_failures_are_a_damaged_commit(text: str, found: tuple[str, str] | None) -> None:
    assert damaged_commit(text) == found


@pytest.mark.spark
def test_a_lake_root_that_is_a_file_is_one_line_before_any_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    write_stack(tmp_path / "in" / "a.parquet", [stack_row(GOOD, path="a.py")])
    (tmp_path / "lake").write_text("not a directory")
    assert run_cli(tmp_path, "extract") == 2
    err = capsys.readouterr().err
    assert f"lake.root {tmp_path / 'lake'} is a file, not a directory" in err
    assert "[extract] start" not in err


@pytest.mark.spark
def test_an_input_file_of_another_schema_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_stack(tmp_path / "in" / "a.parquet", [stack_row(GOOD, path="a.py")])
    odd = pa.Table.from_pylist([stack_row(GOOD.replace("double", "triple"), path="b.py")])
    odd = odd.set_column(odd.schema.get_field_index("max_stars_count"), "max_stars_count", pa.array(["5"]))
    pq.write_table(odd, tmp_path / "in" / "b.parquet")  # stars as text: another schema
    assert run_cli(tmp_path, "extract") == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("selfalign: error:")]
    assert f"input file {tmp_path / 'in' / 'b.parquet'} cannot be read" in line
    assert "max_stars_count" in line and "replace or remove that file" in line
