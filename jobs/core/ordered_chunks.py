"""Chunks as consecutive ranges of an input order (jobs/core/stage.py `Chunking.order`).

A stage that keeps the first of two rows by some order (extract: the most starred copy
of a function) gets the same winner at any chunk size when the chunks are ranges of
that order: the first copy lands in the earliest chunk that holds any copy, wins there,
and every later copy meets it as an already committed row.

The ranges are cut at boundary keys taken from a sample of the key columns (a scan of
those columns only); a row's chunk is the number of boundaries it sorts after, which
any boundaries make consecutive: the sample only decides how even the chunks are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.core.stage import SortKey

# Sampled keys per chunk: enough for chunks within a few percent of even.
SAMPLE_PER_CHUNK = 200
SAMPLE_SEED = 29

Key = tuple[Any, ...]


def compare(left: Key, right: Key, order: Sequence[SortKey]) -> int:
    """-1, 0 or 1 as `left` sorts before, with or after `right` (nulls last)."""
    for a, b, sort in zip(left, right, order, strict=True):
        if a == b:
            continue
        if a is None or b is None:
            return 1 if a is None else -1
        before = a > b if sort.descending else a < b
        return -1 if before else 1
    return 0


def boundaries(sample: Sequence[Key], order: Sequence[SortKey], chunks: int) -> list[Key]:
    """`chunks - 1` keys cutting the sorted sample into equal parts (fewer when the sample
    has fewer distinct keys)."""
    ordered = sorted(set(sample), key=functools.cmp_to_key(lambda a, b: compare(a, b, order)))
    if not ordered:
        return []
    cuts = {min(len(ordered) - 1, (len(ordered) * part) // chunks) for part in range(1, chunks)}
    return [ordered[i] for i in sorted(cuts)]


def _comes_after(value: Any, sort: SortKey) -> Column:
    """The row's column sorts strictly after `value` (nulls last)."""
    column = F.col(sort.column)
    if value is None:
        return F.lit(False)
    beyond = column < F.lit(value) if sort.descending else column > F.lit(value)
    return beyond | column.isNull()


def sorts_after(boundary: Key, order: Sequence[SortKey]) -> Column:
    """The row sorts strictly after `boundary`: equal on a prefix of the key, then after."""
    condition = F.lit(False)
    equal_so_far = F.lit(True)
    for value, sort in zip(boundary, order, strict=True):
        condition = condition | (equal_so_far & _comes_after(value, sort))
        equal_so_far = equal_so_far & F.col(sort.column).eqNullSafe(F.lit(value))
    return condition


def range_chunk(rows: DataFrame, count: int | None, order: Sequence[SortKey], chunks: int) -> Column:
    """Each row's chunk (0 .. chunks - 1) as a range of `order`, from a sample of `rows`'
    key columns (`count`: how many rows there are; None: every key is read)."""
    fraction = 1.0 if count is None else min(1.0, SAMPLE_PER_CHUNK * chunks / max(count, 1))
    names = [sort.column for sort in order]
    sample = [tuple(row) for row in rows.select(*names).sample(fraction=fraction, seed=SAMPLE_SEED).collect()]
    cuts = boundaries(sample, order, chunks)
    return functools.reduce(lambda total, cut: total + F.when(sorts_after(cut, order), 1).otherwise(0),
                            cuts, F.lit(0)).cast("int")
