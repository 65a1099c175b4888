"""Pure-Python references for the Spark dedup job's graph steps (tests only).

Band-key candidates, confirmation on the estimated Jaccard, and connected components
over plain sets and dicts, built on `udfs.minhash`'s banding and estimate. The Spark
versions in the dedup stage are tested against these; production code never imports
this module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from udfs.minhash import band_hash_matrix, jaccard_estimate


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def candidate_pairs(
    ids: Sequence[str], signatures: np.ndarray, bands: int, rows: int
) -> set[tuple[str, str]]:
    """Every (smaller id, larger id) pair that shares at least one band key."""
    if len(ids) != len(signatures):
        raise ValueError(f"{len(ids)} ids but {len(signatures)} signatures")
    buckets: dict[tuple[int, int], list[str]] = defaultdict(list)
    for doc_id, keys in zip(ids, band_hash_matrix(signatures, bands, rows).tolist(), strict=True):
        for band, key in enumerate(keys):
            buckets[(band, key)].append(doc_id)
    pairs: set[tuple[str, str]] = set()
    for members in buckets.values():
        for i, first in enumerate(members):
            pairs.update(_pair(first, second) for second in members[i + 1 :] if second != first)
    return pairs


def confirmed_edges(
    pairs: Iterable[tuple[str, str]], sig_by_id: Mapping[str, np.ndarray], threshold: float
) -> set[tuple[str, str]]:
    """Candidate pairs whose estimated Jaccard reaches the threshold: banding alone
    lets through pairs well below it (the S-curve is not a step)."""
    return {
        _pair(a, b)
        for a, b in pairs
        if jaccard_estimate(sig_by_id[a], sig_by_id[b]) >= threshold
    }


def connected_components(
    edges: Iterable[tuple[str, str]], nodes: Iterable[str]
) -> dict[str, str]:
    """Each node (from `nodes` or any edge) -> the smallest id in its component."""
    parent: dict[str, str] = {node: node for node in nodes}

    def find(node: str) -> str:
        root = parent.setdefault(node, node)
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression keeps later finds O(1)-ish
            parent[node], node = root, parent[node]
        return root

    for a, b in edges:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            # The smaller id always wins the root, so the root is the component's label.
            low, high = sorted((root_a, root_b))
            parent[high] = low
    return {node: find(node) for node in list(parent)}
