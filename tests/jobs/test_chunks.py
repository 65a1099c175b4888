"""Chunks read only their share of the pending input: staged once, partition-pruned."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.core.runner import CHUNK, chunk_inputs, pending_of, run, stage_pending
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
    staged = stage_pending(extract.STAGE, ctx, pending)
    assert staged.count == len(FILES)
    parts = chunk_inputs(extract.STAGE, ctx, staged.rows, 4)
    assert len(parts) == 4
    keys = [sorted(r["hexsha"] for r in part.select("hexsha").collect()) for part in parts]
    everything = sorted(r["hexsha"] for r in pending.select("hexsha").collect())
    assert sorted(k for chunk in keys for k in chunk) == everything  # disjoint and complete
    for index, part in enumerate(parts):
        plan = executed_plan(part.select(F.length("content")))
        # A scan of the staged copy pruned to one partition, not a filter over the input.
        assert "PartitionFilters: [" in plan and f"({CHUNK}" in plan and f"= {index})" in plan
        assert str(tmp_path / "in") not in plan


def test_one_chunk_reads_the_staged_copy_and_nothing_pending_is_a_cheap_no_op(make_ctx, tmp_path: Path,
                                                                            monkeypatch):
    src = write_stack(tmp_path / "in" / "p.parquet", FILES[:3])
    ctx = make_ctx(f"input.path={src}")
    staged = stage_pending(extract.STAGE, ctx, pending_of(extract.STAGE, ctx))
    [part] = chunk_inputs(extract.STAGE, ctx, staged.rows, 1)
    assert CHUNK not in part.columns
    assert str(tmp_path / "in") not in executed_plan(part.select(F.length("content")))
    chunked = make_ctx(f"input.path={src}", "run.chunk_rows=2")
    labels = label_writes(chunked, monkeypatch)
    first = run(extract.STAGE, chunked)
    assert (first.rows_in, first.chunks, first.rows_out) == (3, 2, 3)
    again = run(extract.STAGE, ctx)
    assert (again.rows_in, again.chunks) == (0, 0)

    # Each write's Spark jobs carry the label of the phase that made it (the Spark UI's
    # description), never one left over from the phase before.
    def labelled(table: str) -> list[str]:
        return [label for name, label in labels if name == table]

    assert labelled("runs") == ["extract: start", "extract: finish"]
    # A chunk commits only what it has (the hash cut may leave one empty): each commit is
    # labelled with its own chunk, the same for the output and the progress it records.
    commits = labelled("functions")
    assert commits and set(commits) <= {"extract: commit chunk 1/2", "extract: commit chunk 2/2"}
    assert labelled("progress") == commits
    assert labelled("inputs") == ["extract: finish"]
    assert ctx.spark.sparkContext.getLocalProperty("spark.job.description") == "extract: pending check"


def label_writes(ctx, monkeypatch) -> list[tuple[str, str]]:
    """(table, job description) of every table write through ctx.lake, in order."""
    labels: list[tuple[str, str]] = []
    for method in ("append", "insert_new"):
        real = getattr(ctx.lake, method)

        def write(spec, rows, real=real):
            labels.append((spec.name, ctx.spark.sparkContext.getLocalProperty("spark.job.description")))
            real(spec, rows)

        monkeypatch.setattr(ctx.lake, method, write)
    return labels


def test_verdict_chunks_append_after_clean_runs_and_merge_after_a_failed_one(make_ctx, tmp_path: Path,
                                                                           monkeypatch):
    from jobs.stages import decontaminate
    from schemas import DECONTAMINATION, PROGRESS, RUNS

    src = write_stack(tmp_path / "in" / "p.parquet", FILES)
    ctx = make_ctx(f"input.path={src}", "run.chunk_rows=4")
    run(extract.STAGE, ctx)
    functions = ctx.lake.read(extract.STAGE.output).count()
    assert functions == len(FILES)

    # A run that dies after its first chunk's verdicts were written, before its progress.
    real_append = ctx.lake.append

    def progress_fails(spec, rows):
        if spec == PROGRESS:
            raise RuntimeError("driver lost")
        real_append(spec, rows)

    monkeypatch.setattr(ctx.lake, "append", progress_fails)
    with pytest.raises(RuntimeError):
        run(decontaminate.STAGE, ctx)
    monkeypatch.setattr(ctx.lake, "append", real_append)
    half_written = ctx.lake.read(DECONTAMINATION).count()
    assert 0 < half_written < functions  # verdicts of keys that are still pending

    # The next run MERGEs (its last run failed): one verdict per function, none twice.
    again = run(decontaminate.STAGE, ctx)
    assert again.rows_in == functions
    verdicts = ctx.lake.read(DECONTAMINATION)
    assert verdicts.count() == verdicts.select("function_id").distinct().count() == functions
    statuses = [r["status"] for r in ctx.lake.read(RUNS).where(F.col("stage") == "decontaminate")
                .orderBy("started_at", F.col("ended_at").asc_nulls_first()).collect()]
    assert statuses == ["running", "failed", "running", "succeeded"]

    # New input after that clean run: its verdict chunks are appended, not MERGEd.
    write_stack(tmp_path / "in" / "q.parquet",
                [stack_row(f"def g{i}(y):\n    'Shift y.'\n    return y + {i}\n", path=f"g{i}.py")
                 for i in range(5)])
    later = make_ctx(f"input.path={tmp_path / 'in'}", "run.chunk_rows=4")
    run(extract.STAGE, later)
    assert run(decontaminate.STAGE, later).rows_in == 5
    operations = [r["operation"] for r in later.lake.history(DECONTAMINATION).orderBy("version").collect()]
    assert operations[-3:] == ["MERGE", "WRITE", "WRITE"]  # recovery run, then two appended chunks
    verdicts = later.lake.read(DECONTAMINATION)
    assert verdicts.count() == verdicts.select("function_id").distinct().count() == functions + 5


def _copies() -> list[dict]:
    """Five functions, each in four files with its own imports and stars: the kept copy's
    imports are what typecheck later judges. Stars and hexshas are shuffled against each
    other, so neither the file order nor the hexsha order finds the most starred copy."""
    rng = random.Random(5)
    rows = []
    for fn in range(5):
        code = f"def scale{fn}(x):\n    'Scale x by a helper.'\n    return helper(x) * {fn}\n"
        stars = rng.sample(range(1, 1000), 4)
        for copy in range(4):
            imports = f"from lib{copy} import helper\n\n" if copy % 2 else ""
            rows.append(stack_row(imports + code, path=f"r{copy}/m{fn}.py", repo=f"r{copy}/m",
                                  stars=None if (fn, copy) == (0, 0) else stars[copy]))
    rng.shuffle(rows)
    return rows


def _table(ctx, spec) -> list[tuple]:
    columns = [c for c in spec.columns if c != "run_id"]
    return sorted(tuple(row) for row in ctx.lake.read(spec).select(*columns).collect())


def test_the_same_input_gives_the_same_tables_at_any_chunk_size(make_ctx, tmp_path: Path):
    """Exact duplicates across chunks keep the most starred copy, as in one chunk; the
    rejects, their details and the progress are the same too."""
    from schemas import FUNCTIONS, PROGRESS, REJECTS

    rows = [*_copies(), *FILES]
    src = write_stack(tmp_path / "in" / "p.parquet", rows)
    whole = make_ctx(f"input.path={src}", "run.chunk_rows=1000", lake=tmp_path / "whole")
    chunked = make_ctx(f"input.path={src}", "run.chunk_rows=4", lake=tmp_path / "chunked")
    assert run(extract.STAGE, whole).chunks == 1
    assert run(extract.STAGE, chunked).chunks == 8

    for spec in (FUNCTIONS, REJECTS, PROGRESS):
        assert _table(chunked, spec) == _table(whole, spec), spec.name
    # The winners, from the input: per function the most starred copy (no stars last).
    best: dict[str, tuple[int, str]] = {}
    for row in rows[:20]:
        name = row["content"].split("def ", 1)[1].split("(", 1)[0]
        rank = (-(row["max_stars_count"] or -1), row["hexsha"])
        best[name] = min(best.get(name, rank), rank)
    kept = {r["name"]: r["hexsha"] for r in chunked.lake.read(FUNCTIONS).where(F.col("name").startswith("scale"))
            .collect()}
    assert kept == {name: hexsha for name, (_, hexsha) in best.items()}
