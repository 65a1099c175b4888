"""Hand-made MinHash signatures and shingle-hash sets in the stored form (little-endian
uint32), for transform tests that decide by hand which pairs are near-duplicates."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def sig(base: int, changed: Iterable[int] = ()) -> bytes:
    """A 16-slot signature: base, base+1, ... with the `changed` slots set to 900000 + slot
    (shared by every signature that changes that slot, and by no other value here)."""
    values = np.arange(base, base + 16, dtype="<u4")
    for slot in changed:
        values[slot] = 900_000 + slot
    return values.tobytes()


def hashes(values: Iterable[int]) -> bytes:
    """A stored shingle-hash set: sorted distinct values."""
    return np.array(sorted(set(values)), dtype="<u4").tobytes()
