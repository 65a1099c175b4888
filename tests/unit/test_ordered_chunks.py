"""Chunk boundaries as ranges of an order (jobs/core/ordered_chunks.py)."""

from __future__ import annotations

import functools
import random

from jobs.core.ordered_chunks import boundaries, compare
from jobs.core.stage import SortKey

STARS_THEN_SHA = (SortKey("stars", descending=True), SortKey("sha"))


def test_compare_puts_more_stars_first_then_the_smaller_sha_and_nulls_last():
    assert compare((9, "b"), (3, "a"), STARS_THEN_SHA) == -1
    assert compare((3, "a"), (3, "b"), STARS_THEN_SHA) == -1
    assert compare((3, "b"), (3, "b"), STARS_THEN_SHA) == 0
    assert compare((None, "a"), (0, "z"), STARS_THEN_SHA) == 1
    assert compare((0, None), (0, "a"), STARS_THEN_SHA) == 1


def test_boundaries_cut_the_sorted_sample_in_even_ranges():
    rng = random.Random(3)
    sample = [(rng.choice([None, *range(50)]), f"{i:04x}") for i in range(1000)]
    cuts = boundaries(sample, STARS_THEN_SHA, 4)
    assert len(cuts) == 3
    ordered = sorted(sample, key=functools.cmp_to_key(lambda a, b: compare(a, b, STARS_THEN_SHA)))
    positions = [ordered.index(cut) for cut in cuts]
    assert positions == sorted(positions)
    sizes = [b - a for a, b in zip([-1, *positions], [*positions, len(ordered) - 1], strict=True)]
    assert max(sizes) - min(sizes) <= 2  # 250 each, give or take the cut rows


def test_fewer_distinct_keys_than_chunks_give_fewer_boundaries():
    assert len(boundaries([(1, "a"), (1, "a"), (2, "b")], STARS_THEN_SHA, 8)) <= 2
    assert boundaries([], STARS_THEN_SHA, 4) == []
