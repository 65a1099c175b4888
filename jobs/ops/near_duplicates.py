"""Near-duplicate components: the one chain dedup (functions) and select (instructions)
share, band keys -> candidate pairs -> confirmation -> connected components.

The stages differ only in their parameters (threshold, shingle size, bands, verify mode:
LSHParams) and in what they do with a component afterwards (dedup keeps the most starred
member and writes cluster sizes; select keeps the first come), so those parts stay in
the stages. Building blocks: jobs/ops/lsh.py and jobs/ops/components.py.

A node is a row with an id (its column named by the caller), `is_new`, `signature` and
`shingles` (null where not kept); candidate pairs need a new node on one side, so two
nodes of earlier runs are never compared again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.ops.components import connected_components
from jobs.ops.lsh import (
    LSHParams,
    band_keys,
    candidate_pairs,
    confirmed_edges,
    jaccard_label,
    signatures,
    verifying,
    with_jaccard,
)


@dataclass(frozen=True)
class NearDuplicates:
    """The confirmed graph: `edges` (lo, hi, jaccard), lo < hi, and `components`
    (<id column>, component) for every node on an edge, component being the smallest id
    of its component. A node on no edge has no row: it is a near-duplicate of nothing."""

    edges: DataFrame
    components: DataFrame


def signed_nodes(items: DataFrame, params: LSHParams, id_col: str = "id") -> DataFrame:
    """Items (id_col, text, is_new) -> nodes (id_col, signature, num_perm, shingles, is_new),
    hashed once: the chain and the caller's scoring read them several times."""
    texts = items.select(F.col(id_col).alias("id"), "text", "is_new")
    hashed = signatures(texts, params).join(texts.select("id", "is_new"), on="id", how="inner")
    return hashed.withColumnRenamed("id", id_col).localCheckpoint()


def _graph_nodes(nodes: DataFrame, id_col: str) -> DataFrame:
    return nodes.withColumnRenamed(id_col, "id") if id_col != "id" else nodes


def near_duplicate_components(nodes: DataFrame, params: LSHParams, id_col: str = "id") -> NearDuplicates:
    """Nodes (id_col, is_new, signature, shingles; computed once, since they are read
    for the band keys and again for the confirmation) -> their near-duplicate graph.

    Pairs sharing a band key (bands tuned for params.candidate_threshold) are confirmed
    under params.verify: "exact" on the shingle sets' Jaccard, "estimate" on the
    signatures', both against params.threshold; "none" confirms every candidate.
    """
    graph = _graph_nodes(nodes, id_col).select("id", "is_new", "signature", "shingles")
    # Checkpointed: the components read the edges every round, and callers read them too.
    edges = confirmed_edges(candidate_pairs(band_keys(graph, params)),
                            graph.select("id", "signature", "shingles"), params).localCheckpoint()
    labels, _ = connected_components(edges, params.max_iterations)
    return NearDuplicates(edges, labels.withColumnRenamed("id", id_col))


def similarity(pairs: DataFrame, member: str, keeper: str, nodes: DataFrame, params: LSHParams,
               id_col: str = "id") -> DataFrame:
    """`pairs` (member, keeper columns holding node ids) plus `jaccard`, the two nodes'
    Jaccard as params.verify measures it (exact where both shingle sets are there, else
    the signatures' estimate), and `measure`, its name for a reject detail."""
    sigs = verifying(_graph_nodes(nodes, id_col).select("id", "signature", "shingles"), params)
    scored = with_jaccard(pairs, member, keeper, sigs, params.num_perm)
    return scored.withColumn("measure", jaccard_label()).drop("exact")
