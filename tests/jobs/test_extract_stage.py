"""The extract stage through local Spark and Delta."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.core.runner import run
from jobs.stages import extract
from schemas import FUNCTIONS, PROGRESS, REJECTS, RUNS
from schemas.outcome import Reason
from tests.stack_rows import stack_row, write_stack
from udfs.extract import function_id

pytestmark = pytest.mark.spark

GOOD = 'import json\n\ndef dump(data, indent=2):\n    """Serialize data as JSON."""\n    return json.dumps(data, indent=indent)\n'
GOOD_2 = 'def double(x):\n    """Twice x."""\n    return x * 2\n'
NO_RETURN = 'def shout(msg):\n    """Print loudly."""\n    print(msg.upper())\n'

BAD_FILES = {
    Reason.EMPTY_CONTENT: None,
    Reason.BINARY_CONTENT: "\x01\x02\x03\x04\x05" * 200,
    Reason.PYTHON2_SYNTAX: 'def g():\n    return 1\nprint "hello"\n',
    Reason.FILE_TOO_LARGE: "x = 1\n" * 200_000,
    Reason.TOO_DEEPLY_NESTED: "def g():\n    return 1\nx = 1" + " + 1" * 100_000,
    Reason.NUL_BYTES: 'def f(a):\n    "doc"\n    return a\x00\n',
    Reason.UNTERMINATED_TOKEN: 'def g():\n    return 1\ns = """never closed\n',
    Reason.NO_DOCSTRING_FUNCTIONS: "VALUE = 1\n",
}


def run_extract(ctx):
    return run(extract.STAGE, ctx)


def test_every_bad_input_kind_is_a_reject_with_its_reason(make_ctx, tmp_path: Path, spark):
    rows = [stack_row(content, path=f"bad/{reason}.py") for reason, content in BAD_FILES.items()]
    rows.append(stack_row("def f(x):\n    'd'\n    return x\n", path="x.js", lang="JavaScript"))
    rows.append(stack_row(GOOD, path="ok.py"))
    src = write_stack(tmp_path / "in" / "part-0.parquet", rows)
    ctx = make_ctx(f"input.path={src}")

    summary = run_extract(ctx)

    rejects = {(r["source_key"], r["reason"]) for r in ctx.lake.read(REJECTS).collect()}
    for row, reason in zip(rows, [*BAD_FILES, Reason.NOT_PYTHON], strict=False):
        assert (row["hexsha"], reason) in rejects, reason
    assert ctx.lake.read(FUNCTIONS).select("name").collect()[0]["name"] == "dump"
    assert summary.rows_in == len(rows)
    assert summary.rows_out == 1 and summary.rows_rejected == len(rows) - 1


def test_non_utf8_binary_content_column(make_ctx, tmp_path: Path):
    table = pa.table({
        "hexsha": ["a" * 40, "b" * 40],
        "lang": ["Python", "Python"],
        "content": pa.array([b"\xff\xfe bad bytes", GOOD.encode()], type=pa.binary()),
    })
    src = tmp_path / "bin.parquet"
    pq.write_table(table, src)
    ctx = make_ctx(f"input.path={src}")
    run_extract(ctx)
    reasons = {r["item_id"]: r["reason"] for r in ctx.lake.read(REJECTS).collect()}
    assert reasons == {"a" * 40: Reason.NOT_UTF8}
    assert ctx.lake.read(FUNCTIONS).count() == 1


def test_transform_output_rows(make_ctx, tmp_path: Path, spark):
    src = write_stack(tmp_path / "in.parquet", [stack_row(GOOD_2 + "\n\n" + NO_RETURN, path="m.py", stars=7)])
    ctx = make_ctx(f"input.path={src}")
    files = extract.read_files(ctx)
    settings = extract.ExtractSettings(ctx.cfg.extract, spark.createDataFrame([], "function_id string, hexsha string"))
    out = extract.resolve(extract.transform(files, settings), settings)
    got = out.select("name", "line_count", "arg_count", "has_return", "stars", "reject_reason")
    expected = spark.createDataFrame(
        [("double", 3, 1, True, 7, None), ("shout", 3, 1, False, 7, Reason.NO_RETURN_VALUE)],
        "name string, line_count int, arg_count int, has_return boolean, stars long, reject_reason string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_rerun_adds_nothing_and_new_files_cost_only_themselves(make_ctx, tmp_path: Path):
    write_stack(tmp_path / "in" / "a.parquet", [
        stack_row(GOOD, path="a.py"), stack_row(NO_RETURN, path="b.py"),
    ])
    lake = tmp_path / "lake"
    ctx = make_ctx(f"input.path={tmp_path / 'in' / '*.parquet'}", lake=lake)
    run_extract(ctx)
    ids_before = sorted(r["function_id"] for r in ctx.lake.read(FUNCTIONS).collect())
    rejects_before = ctx.lake.read(REJECTS).count()

    again = run_extract(make_ctx(f"input.path={tmp_path / 'in' / '*.parquet'}", lake=lake))
    assert again.rows_in == 0
    assert sorted(r["function_id"] for r in ctx.lake.read(FUNCTIONS).collect()) == ids_before
    assert ctx.lake.read(REJECTS).count() == rejects_before

    # A new snapshot file: one new function, one exact copy of an existing function.
    write_stack(tmp_path / "in" / "b.parquet", [
        stack_row(GOOD_2, path="c.py"), stack_row(GOOD, path="fork/a.py", repo="other/fork"),
    ])
    third = run_extract(make_ctx(f"input.path={tmp_path / 'in' / '*.parquet'}", lake=lake))
    assert third.rows_in == 2
    names = sorted(r["name"] for r in ctx.lake.read(FUNCTIONS).collect())
    assert names == ["double", "dump"]
    dup = ctx.lake.read(REJECTS).where(F.col("reason") == Reason.EXACT_DUPLICATE).collect()
    assert [r["item_id"].split(":")[1] for r in dup] == [function_id(GOOD.split("\n\n", 1)[1])]
    assert ctx.lake.read(PROGRESS).count() == 4
    # The run with nothing pending was one cheap check: no commits, no `runs` rows.
    statuses = sorted(r["status"] for r in ctx.lake.read(RUNS).collect())
    assert statuses == ["running"] * 2 + ["succeeded"] * 2


def test_exact_copies_in_one_batch_keep_the_most_starred(make_ctx, tmp_path: Path):
    src = write_stack(tmp_path / "in.parquet", [
        stack_row(GOOD, path="low.py", repo="a/low", stars=1),
        stack_row(GOOD, path="high.py", repo="b/high", stars=900),
    ])
    ctx = make_ctx(f"input.path={src}")
    run_extract(ctx)
    kept = ctx.lake.read(FUNCTIONS).collect()
    assert [(r["repo"], r["stars"]) for r in kept] == [("b/high", 900)]
    dup = ctx.lake.read(REJECTS).collect()
    assert [r["reason"] for r in dup] == [Reason.EXACT_DUPLICATE]


def test_a_file_listed_twice_counts_once(make_ctx, tmp_path: Path):
    """The same file (same hexsha) in two input files: its function is kept once, with no
    exact_duplicate reject against itself, and its file-level rejects are not doubled."""
    twice = [stack_row(GOOD, path="a.py"), stack_row("VALUE = 1\n", path="b.py")]
    fork = stack_row(GOOD, path="fork.py", stars=1)
    write_stack(tmp_path / "in" / "one.parquet", [*twice, fork])
    write_stack(tmp_path / "in" / "two.parquet", twice)
    ctx = make_ctx(f"input.path={tmp_path / 'in' / '*.parquet'}")
    run_extract(ctx)
    kept = ctx.lake.read(FUNCTIONS).collect()
    assert [(r["path"], r["name"]) for r in kept] == [("a.py", "dump")]
    reasons = sorted((r["reason"], r["item_id"].split(":")[0]) for r in ctx.lake.read(REJECTS).collect())
    assert reasons == sorted([(Reason.EXACT_DUPLICATE, fork["hexsha"]),
                              (Reason.NO_DOCSTRING_FUNCTIONS, twice[1]["hexsha"])])
    assert ctx.lake.read(PROGRESS).count() == 3


def test_missing_input_is_a_clear_error(make_ctx, tmp_path: Path):
    from jobs.core.failures import StageError

    ctx = make_ctx(f"input.path={tmp_path / 'nowhere' / '*.parquet'}")
    with pytest.raises(StageError, match="cannot read input parquet"):
        run_extract(ctx)


def test_unusable_inputs_are_one_line_before_any_work(tmp_path: Path, capsys):
    """A folder without parquet files, an input with no rows, a column of the wrong type:
    exit 2 with one line naming the problem, and no Spark job over the input."""
    from jobs.cli import main

    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("hello\n")
    write_stack(tmp_path / "empty.parquet", [])
    pq.write_table(pa.table({"hexsha": ["a1"], "content": [7]}), tmp_path / "ints.parquet")
    cases = {
        "texts": "extract: no parquet files in",
        "empty.parquet": "extract: no input rows in",
        "ints.parquet": "column 'content' is bigint; The Stack's is string or binary",
    }
    for name, message in cases.items():
        with pytest.raises(SystemExit) as failed:
            main(["run", "--no-status", "--set", f"input.path={tmp_path / name}",
                  "--set", f"lake.root={tmp_path / ('lake-' + name)}"])
        assert failed.value.code == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("selfalign: error: ") and message in err[-1], err[-1]
        assert not any("Traceback" in line or line.lstrip().startswith("at ") for line in err), name


def test_corrupt_input_file_is_one_clear_line_and_the_rerun_recovers(spark, tmp_path: Path, capsys):
    from jobs.cli import main

    good = write_stack(tmp_path / "in" / "part-0.parquet", [stack_row(GOOD_2, path="a.py")])
    corrupt = tmp_path / "in" / "part-1.parquet"
    corrupt.write_bytes(b"PAR1" + b"\x00not parquet at all\xff" * 64)  # truncated, garbled footer
    argv = ["run", "--until", "extract", "--no-status", "--set", f"input.path={tmp_path / 'in'}",
            "--set", f"lake.root={tmp_path / 'lake'}"]

    with pytest.raises(SystemExit) as failed:
        main(argv)
    assert failed.value.code == 2  # the operator's to repair
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("selfalign: error: stage 'extract' failed: input file ")
    assert f"{corrupt} cannot be read: " in last and "Parquet" in last
    assert "replace or remove that file, then rerun" in last

    # Nothing half-written blocks the next run: the operator removes the file and reruns.
    corrupt.unlink()
    with pytest.raises(SystemExit) as rerun:
        main(argv)
    assert rerun.value.code == 0
    lake = tmp_path / "lake"
    names = [r["name"] for r in spark.read.format("delta").load(str(lake / "functions")).collect()]
    assert names == ["double"]
    states = {r["status"] for r in spark.read.format("delta").load(str(lake / "runs")).collect()}
    assert states == {"running", "failed", "succeeded"}
    assert good.exists()
