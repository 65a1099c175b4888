"""Chunks read only their share of the pending input: staged once, partition-pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.core.runner import CHUNK, chunk_inputs, pending_of, run
from jobs.stages import extract
from tests.stack_rows import stack_row, write_stack

pytestmark = pytest.mark.spark

FILES = [stack_row(f"def f{i}(x):\n    'Scale x.'\n    return x * {i}\n", path=f"m{i}.py")
         for i in range(11)]


def executed_plan(df) -> str:
    return str(df._jdf.queryExecution().executedPlan().toString())


def test_each_chunk_reads_its_own_partition_and_together_they_read_all(make_ctx, tmp_path: Path):
    src = write_stack(tmp_path / "in" / "p.parquet", FILES)
    ctx = make_ctx(f"input.path={src}")
    pending = pending_of(extract.STAGE, ctx)
    parts = chunk_inputs(extract.STAGE, ctx, pending, 4)
    assert len(parts) == 4
    keys = [sorted(r["hexsha"] for r in part.select("hexsha").collect()) for part in parts]
    everything = sorted(r["hexsha"] for r in pending.select("hexsha").collect())
    assert sorted(k for chunk in keys for k in chunk) == everything  # disjoint and complete
    for index, part in enumerate(parts):
        plan = executed_plan(part.select(F.length("content")))
        # A scan of the staged copy pruned to one partition, not a filter over the input.
        assert "PartitionFilters: [" in plan and f"({CHUNK}" in plan and f"= {index})" in plan
        assert str(tmp_path / "in") not in plan


def test_one_chunk_reads_the_input_directly_and_nothing_pending_is_a_cheap_no_op(make_ctx, tmp_path: Path):
    src = write_stack(tmp_path / "in" / "p.parquet", FILES[:3])
    ctx = make_ctx(f"input.path={src}")
    [part] = chunk_inputs(extract.STAGE, ctx, pending_of(extract.STAGE, ctx), 1)
    assert CHUNK not in part.columns
    first = run(extract.STAGE, make_ctx(f"input.path={src}", "run.chunk_rows=2"))
    assert (first.rows_in, first.chunks, first.rows_out) == (3, 2, 3)
    again = run(extract.STAGE, ctx)
    assert (again.rows_in, again.chunks) == (0, 0)
