"""The near-duplicate chain dedup and select share (jobs/ops/near_duplicates.py), on
hand-built nodes.

As in test_transforms.py: 16-slot hand-made signatures with threshold and candidate
threshold 0.5 give 7 bands x 2 rows (band i holds slots 2i and 2i+1), so which pairs are
candidates and their estimated Jaccard (equal slots / 16) are read off the changed slots;
shingle sets are small integer sets whose exact Jaccard is counted by hand.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.sections import DedupConfig
from jobs.ops.lsh import LSHParams, band_choice
from jobs.ops.near_duplicates import near_duplicate_components, signed_nodes, similarity
from tests.signatures import hashes, sig

pytestmark = pytest.mark.spark

NODES = "item string, is_new boolean, signature binary, shingles binary"
EDGES = "lo string, hi string, jaccard double"
COMPONENTS = "item string, component string"


def params(verify: str = "exact") -> LSHParams:
    return replace(LSHParams.from_config(DedupConfig(verify=verify)), num_perm=16, candidate_threshold=0.5,
                   fp_weight=0.2, fn_weight=0.8)


def rounded(edges: DataFrame) -> DataFrame:
    return edges.withColumn("jaccard", F.round("jaccard", 3))


def same(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True,
                       ignore_column_order=True)


def test_the_bands_the_signatures_rely_on():
    assert band_choice(params()) == (7, 2)


def test_two_families_become_two_components_and_a_singleton_none(spark):
    nodes = spark.createDataFrame([
        ("a1", True, sig(0), hashes(range(1, 11))),
        ("a2", True, sig(0, [0, 1]), hashes([*range(1, 10), 11])),  # a1: 9/11
        ("a3", True, sig(0, range(6)), hashes([*range(1, 9), 11, 12])),  # a2: 9/11, a1: 8/12
        ("b1", True, sig(5000), hashes(range(100, 110))),
        ("b2", False, sig(5000, [12, 13]), hashes([*range(100, 109), 110])),  # of an earlier run; b1: 9/11
        ("s", True, sig(9000), hashes(range(200, 210))),  # like nothing
        # Two rows of earlier runs, equal: never compared again, so on no edge.
        ("e1", False, sig(7000), hashes(range(300, 310))),
        ("e2", False, sig(7000), hashes(range(300, 310))),
    ], NODES)
    found = near_duplicate_components(nodes, params(), id_col="item")
    same(found.components, spark.createDataFrame(
        [("a1", "a1"), ("a2", "a1"), ("a3", "a1"), ("b1", "b1"), ("b2", "b1")], COMPONENTS))
    same(rounded(found.edges), spark.createDataFrame(
        [("a1", "a2", 0.818), ("a1", "a3", 0.667), ("a2", "a3", 0.818), ("b1", "b2", 0.818)], EDGES))


# p: estimated 14/16 alike but 2 of 18 shingles shared; q: 2/16 alike (band 0 only, so
# still a candidate) but equal shingle sets.
VERIFY_NODES = [
    ("p1", True, sig(0), hashes(range(1, 11))),
    ("p2", True, sig(0, [0, 1]), hashes([1, 2, *range(20, 28)])),
    ("q1", True, sig(7000), hashes(range(50, 60))),
    ("q2", True, sig(7000, range(2, 16)), hashes(range(50, 60))),
]


@pytest.mark.parametrize(("verify", "edges"), [
    ("exact", [("q1", "q2", 1.0)]),  # the shingle sets decide
    ("estimate", [("p1", "p2", 0.875)]),  # the signatures decide
    ("none", [("p1", "p2", 0.875), ("q1", "q2", 0.125)]),  # every candidate, its estimate recorded
])
def test_the_verify_mode_decides_which_candidates_are_edges(spark, verify, edges):
    nodes = spark.createDataFrame(VERIFY_NODES, NODES)
    found = near_duplicate_components(nodes, params(verify), id_col="item")
    same(rounded(found.edges), spark.createDataFrame(edges, EDGES))
    same(found.components, spark.createDataFrame(
        [(node, lo) for lo, hi, _ in edges for node in (lo, hi)], COMPONENTS))


@pytest.mark.parametrize(("verify", "jaccard", "measure"), [
    ("exact", 0.111, "Jaccard"), ("estimate", 0.875, "estimated Jaccard"),
    ("none", 0.875, "estimated Jaccard"),
])
def test_similarity_to_a_keeper_is_measured_as_the_verify_mode_says(spark, verify, jaccard, measure):
    nodes = spark.createDataFrame(VERIFY_NODES, NODES)
    pairs = spark.createDataFrame([("p2", "p1")], "item string, kept string")
    got = similarity(pairs, "item", "kept", nodes, params(verify), id_col="item")
    same(got.withColumn("jaccard", F.round("jaccard", 3)), spark.createDataFrame(
        [("p2", "p1", jaccard, measure)], "item string, kept string, jaccard double, measure string"))


def test_texts_are_hashed_into_nodes_the_chain_reads(spark):
    text = "def add(a, b):\n    return a + b  # the sum of two numbers, as documented here"
    items = spark.createDataFrame(
        [("t1", text, True), ("t2", text, False), ("t3", "class Queue:\n    pass  # nothing alike at all", True)],
        "item string, text string, is_new boolean")
    cfg = LSHParams.from_config(DedupConfig(shingle_size=3))
    nodes = signed_nodes(items, cfg, id_col="item")
    assert set(nodes.columns) >= {"item", "is_new", "signature", "shingles"}
    same(near_duplicate_components(nodes, cfg, id_col="item").components,
         spark.createDataFrame([("t1", "t1"), ("t2", "t1")], COMPONENTS))
