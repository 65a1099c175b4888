"""Nightly input in one folder: extract reads only files it has not consumed (`inputs`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.core.runner import run
from jobs.stages import extract
from schemas import FUNCTIONS, INPUTS
from tests.stack_rows import stack_row, write_stack

pytestmark = pytest.mark.spark


def source(name: str) -> str:
    return f'def {name}(x):\n    """Return {name} of x."""\n    return x + {len(name)}\n'


def night(folder: Path, file: str, names: list[str]) -> Path:
    rows = [stack_row(source(n), path=f"{file}/{n}.py", repo=f"acme/{file}") for n in names]
    return write_stack(folder / f"{file}.parquet", rows)


def garble_in_place(path: Path) -> None:
    """Same size, same modification time, content no parquet reader accepts: a file
    that is opened (even for its footer) fails the read."""
    stat = path.stat()
    path.write_bytes(b"\xff" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def extracted_names(ctx) -> set[str]:
    return {r["name"] for r in ctx.lake.read(FUNCTIONS).select("name").collect()}


def test_a_new_file_in_the_same_folder_is_all_the_next_run_reads(make_ctx, tmp_path: Path):
    folder = tmp_path / "stack"
    first = night(folder, "night1", ["alpha", "beta", "gamma"])
    ctx = make_ctx(f"input.path={folder}")
    assert run(extract.STAGE, ctx).rows_in == 3

    night(folder, "night2", ["delta", "epsilon"])
    garble_in_place(first)  # consumed and unchanged: must never be opened again
    summary = run(extract.STAGE, ctx)

    assert summary.rows_in == 2
    assert extracted_names(ctx) == {"alpha", "beta", "gamma", "delta", "epsilon"}
    consumed = {Path(r["path"].removeprefix("file:")).name for r in ctx.lake.read(INPUTS).collect()}
    assert consumed == {"night1.parquet", "night2.parquet"}
    # Nothing new: the stage finds nothing pending without opening any file.
    assert run(extract.STAGE, ctx).rows_in == 0


def test_a_rewritten_file_counts_as_changed(make_ctx, tmp_path: Path):
    folder = tmp_path / "stack"
    first = night(folder, "night1", ["alpha", "beta"])
    ctx = make_ctx(f"input.path={folder}")
    run(extract.STAGE, ctx)

    before = first.stat()
    night(folder, "night1", ["alpha", "beta", "zeta"])  # the same name, rewritten
    os.utime(first, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    summary = run(extract.STAGE, ctx)

    # Its rows are read again; the hexsha anti-join keeps only the file row not seen.
    assert summary.rows_in == 1
    assert "zeta" in extracted_names(ctx)
    versions = ctx.lake.read(INPUTS).where(F.col("path").endswith("night1.parquet")).count()
    assert versions == 2


def test_many_new_files_are_read_through_the_folder_and_kept_by_name(make_ctx, tmp_path: Path):
    folder = tmp_path / "stack"
    for index in range(3):
        night(folder, f"part{index}", [f"fn{index}a", f"fn{index}b"])
    ctx = make_ctx(f"input.path={folder}", "extract.read_by_name_max_files=2")
    assert run(extract.STAGE, ctx).rows_in == 6
    assert ctx.lake.read(INPUTS).count() == 3
