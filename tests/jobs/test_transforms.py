"""The pure DataFrame functions of dedup and select, as transforms on small hand-built frames.

Every expected frame is written by hand from the functions' documented behaviour.
Signatures are hand-made 16-slot vectors (`sig`): with threshold and candidate threshold
0.5 and num_perm=16 the LSH uses 7 bands x 2 rows (band i holds slots 2i and 2i+1, slots
14-15 are in no band), so which pairs share a band and what their estimated Jaccard is
(equal slots / 16) can be read off the slots each signature changes. Shingle sets
(`hashes`) are small integer sets whose exact Jaccard is counted by hand.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.core.sections import DedupConfig

# --- the functions under test: where they live, and their node id column ---------------
from jobs.ops.components import connected_components
from jobs.ops.lsh import BAND_SCHEMA, LSHParams, band_choice, band_keys, candidate_pairs
from jobs.stages.dedup import DedupSettings
from jobs.stages.dedup import transform as dedup_transform
from jobs.stages.select import choose, exact_duplicates, same_function_names, verdict_summary
from schemas.outcome import Reason
from tests.signatures import hashes, sig

NODE = "id"  # of band keys, pairs' members and component labels


def cluster(functions, seeds, params):
    """dedup's transform: pending (function_id, stars, signature[, shingles]), existing
    representatives (function_id, signature, cluster_size) -> one outcome row per pending
    function. Without a shingles column the signatures' estimate decides."""
    if "shingles" not in functions.columns:
        functions = functions.withColumn("shingles", F.lit(None).cast("binary"))
    seeds = seeds.withColumn("shingles", F.lit(None).cast("binary"))
    sigs = functions.select("function_id", "signature", "shingles").unionByName(
        seeds.select("function_id", "signature", "shingles"))
    settings = DedupSettings(params, signatures=sigs, known=seeds, to_hash=None)
    return dedup_transform(functions.select("function_id", "stars"), settings)


# ---------------------------------------------------------------------------------------

pytestmark = pytest.mark.spark

CFG = replace(LSHParams.from_config(DedupConfig()), num_perm=16, candidate_threshold=0.5)  # threshold 0.5
ESTIMATE = replace(CFG, verify="estimate")
EDGES = "lo string, hi string"
LABELS = f"{NODE} string, component string"
PAIRS = "lo string, hi string"
OUTCOME = ("function_id string, cluster_id string, cluster_size long, is_representative boolean, "
           "source_key string, item_id string, reject_reason string, reject_detail string")
LSH = "(LSH 7 bands x 2 rows)"


def same(actual, expected) -> None:
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True,
                       ignore_column_order=True)


def test_lsh_layout_the_signatures_rely_on():
    assert band_choice(CFG) == (7, 2)


# --- connected components -----------------------------------------------------------------

def test_components_are_labelled_by_their_smallest_member(spark):
    # A chain a-b-c (one edge given reversed, one twice) and a separate pair d-e.
    edges = spark.createDataFrame([("b", "a"), ("b", "c"), ("c", "b"), ("d", "e")], EDGES)
    labels, iterations = connected_components(edges, 10)
    expected = spark.createDataFrame(
        [("a", "a"), ("b", "a"), ("c", "a"), ("d", "d"), ("e", "d")], LABELS)
    same(labels, expected)
    assert iterations <= 10


def test_components_cut_short_are_split_never_wrong(spark):
    # Documented: before convergence a label is still an id of the node's own component.
    edges = spark.createDataFrame([("a", "b"), ("b", "c"), ("c", "d"), ("x", "y")], EDGES)
    labels, iterations = connected_components(edges, 0)
    assert iterations == 0
    got = {r[NODE]: r["component"] for r in labels.collect()}
    assert set(got) == {"a", "b", "c", "d", "x", "y"}
    for node, label in got.items():
        assert label <= node
        assert label in ({"x", "y"} if node in "xy" else {"a", "b", "c", "d"})


# --- band keys and candidate pairs ----------------------------------------------------------

def test_band_keys_one_row_per_band_equal_where_the_band_is(spark):
    nodes = spark.createDataFrame(
        [("a", True, sig(0)), ("b", False, sig(0)), ("c", True, sig(0, [3]))],
        f"{NODE} string, is_new boolean, signature binary")
    keys = band_keys(nodes, CFG)
    assert keys.schema == BAND_SCHEMA
    counts = keys.groupBy(NODE, "is_new").agg(
        F.count(F.lit(1)).alias("n"), F.min("band").alias("first"), F.max("band").alias("last"))
    same(counts, spark.createDataFrame(
        [("a", True, 7, 0, 6), ("b", False, 7, 0, 6), ("c", True, 7, 0, 6)],
        f"{NODE} string, is_new boolean, n long, first int, last int"))

    def key_of(fid):
        return keys.where(F.col(NODE) == fid).select("band", F.col("key").alias(fid))

    # Equal signatures: equal keys in every band; slot 3 changed: band 1 only differs.
    compared = key_of("a").join(key_of("b"), "band").join(key_of("c"), "band").select(
        "band", (F.col("a") == F.col("b")).alias("a_is_b"), (F.col("a") == F.col("c")).alias("a_is_c"))
    same(compared, spark.createDataFrame(
        [(band, True, band != 1) for band in range(7)], "band int, a_is_b boolean, a_is_c boolean"))


def test_candidate_pairs_share_a_band_key_and_a_new_member(spark):
    keys = spark.createDataFrame(
        [("b", True, 0, 1), ("a", True, 0, 1), ("c", False, 0, 1),  # one bucket of three
         ("a", True, 1, 1), ("b", True, 1, 1),  # the same pair again in another band
         ("s1", False, 0, 2), ("s2", False, 0, 2),  # existing rows only: never compared again
         ("d", True, 2, 1),  # key 1 but in band 2: shares no bucket with a, b, c
         ("e", True, 1, 5)],  # alone in its bucket
        BAND_SCHEMA)
    expected = spark.createDataFrame([("a", "b"), ("a", "c"), ("b", "c")], PAIRS)
    same(candidate_pairs(keys), expected)


def test_candidate_pairs_in_a_big_bucket_link_to_its_smallest_member(spark):
    # Bigger than max_full_bucket: each member pairs with the smallest id only, and a pair
    # of two existing rows (s0, s9) is still skipped.
    keys = spark.createDataFrame(
        [("x2", True, 3, 8), ("s9", False, 3, 8), ("x1", True, 3, 8), ("s0", False, 3, 8),
         ("x3", True, 3, 8)],
        BAND_SCHEMA)
    expected = spark.createDataFrame([("s0", "x1"), ("s0", "x2"), ("s0", "x3")], PAIRS)
    same(candidate_pairs(keys, max_full_bucket=2), expected)


# --- dedup transform ------------------------------------------------------------------------

def _functions(spark, rows):
    return spark.createDataFrame(rows, "function_id string, stars long, signature binary")


def _seeds(spark, rows):
    return spark.createDataFrame(rows, "function_id string, signature binary, cluster_size long")


def test_dedup_transform_keeps_the_most_starred_of_near_duplicates(spark):
    functions = _functions(spark, [
        ("f1", 10, sig(0)),
        ("f2", 30, sig(0, [0, 1])),  # 14 of 16 slots equal f1's: estimated Jaccard 0.875
        ("f3", 5, sig(500)),  # unlike anything
        ("f4", 5, sig(500)),  # a copy of f3 with as many stars: the smaller id wins
        ("f5", 7, sig(1000)),  # unlike anything
    ])
    got = cluster(functions, _seeds(spark, []), CFG)
    expected = spark.createDataFrame([
        ("f1", "f2", 2, False, "f1", "f1", Reason.NEAR_DUPLICATE,
         f"near duplicate of f2: estimated Jaccard 0.875 {LSH}"),
        ("f2", "f2", 2, True, "f2", "f2", None, None),
        ("f3", "f3", 2, True, "f3", "f3", None, None),
        ("f4", "f3", 2, False, "f4", "f4", Reason.NEAR_DUPLICATE,
         f"near duplicate of f3: estimated Jaccard 1.000 {LSH}"),
        ("f5", "f5", 1, True, "f5", "f5", None, None),
    ], OUTCOME)
    same(got, expected)


def test_dedup_transform_seeds_stay_representatives(spark):
    # n1 is 12/16 like seed s1 (slots 0-3 changed); n3 is 10/16 like n1 (slots 4-9 changed
    # further) but only 6/16 like s1: it joins s1's cluster through n1.
    seeds = _seeds(spark, [("s1", sig(0), 3), ("s9", sig(9000), 1)])
    functions = _functions(spark, [
        ("n1", 100, sig(0, range(4))),  # more stars than anyone: the seed still wins
        ("n2", 1, sig(5000)),
        ("n3", 1, sig(0, range(10))),
    ])
    got = cluster(functions, seeds, CFG)
    expected = spark.createDataFrame([  # one row per pending function: none for s1 or s9
        ("n1", "s1", 5, False, "n1", "n1", Reason.NEAR_DUPLICATE,
         f"near duplicate of s1: estimated Jaccard 0.750 {LSH}"),
        ("n2", "n2", 1, True, "n2", "n2", None, None),
        ("n3", "s1", 5, False, "n3", "n3", Reason.NEAR_DUPLICATE,
         f"near duplicate of s1: estimated Jaccard 0.375; linked by n1 at 0.625 {LSH}"),
    ], OUTCOME)
    same(got, expected)


def _exact_case(spark):
    return spark.createDataFrame([
        # 14/16 slots equal (estimate 0.875), but shingles {1..4} shared of {1..16}: 0.25.
        ("g1", 10, sig(0), hashes(range(1, 11))),
        ("g2", 30, sig(0, [0, 1]), hashes([1, 2, 3, 4, *range(11, 17)])),
        # 6/16 slots equal (estimate 0.375; bands 5 and 6 shared, so a candidate), but
        # shingles: 7 shared of 12, 0.583.
        ("g3", 5, sig(2000), hashes(range(100, 110))),
        ("g4", 1, sig(2000, range(10)), hashes([*range(100, 107), 110, 111])),
    ], "function_id string, stars long, signature binary, shingles binary")


def test_dedup_transform_confirms_candidates_on_the_exact_jaccard(spark):
    got = cluster(_exact_case(spark), _seeds(spark, []), CFG)
    expected = spark.createDataFrame([
        ("g1", "g1", 1, True, "g1", "g1", None, None),
        ("g2", "g2", 1, True, "g2", "g2", None, None),
        ("g3", "g3", 2, True, "g3", "g3", None, None),
        ("g4", "g3", 2, False, "g4", "g4", Reason.NEAR_DUPLICATE,
         f"near duplicate of g3: Jaccard 0.583 {LSH}"),
    ], OUTCOME)
    same(got, expected)


def test_dedup_transform_verify_estimate_ignores_the_shingles(spark):
    got = cluster(_exact_case(spark), _seeds(spark, []), ESTIMATE)
    expected = spark.createDataFrame([
        ("g1", "g2", 2, False, "g1", "g1", Reason.NEAR_DUPLICATE,
         f"near duplicate of g2: estimated Jaccard 0.875 {LSH}"),
        ("g2", "g2", 2, True, "g2", "g2", None, None),
        ("g3", "g3", 1, True, "g3", "g3", None, None),
        ("g4", "g4", 1, True, "g4", "g4", None, None),
    ], OUTCOME)
    same(got, expected)


def test_default_bands_are_tuned_below_the_threshold():
    # 0.8 x 0.5 = 0.4 at 256 permutations, fp/fn weights 0.2/0.8: 64 bands x 4 rows, which
    # makes a pair at exactly J=0.5 a candidate with probability 1 - (1 - 0.5**4)**64 > 0.98.
    params = LSHParams.from_config(DedupConfig())
    assert params.candidate_threshold == pytest.approx(0.4)
    assert band_choice(params) == (64, 4)
    bands, rows = band_choice(params)
    assert 1 - (1 - 0.5**rows) ** bands > 0.98


# --- select: function-name diversification -------------------------------------------------

def test_same_function_names_keep_one_per_seed_and_name_set(spark):
    nodes = spark.createDataFrame([
        ("i1", True, "s1", "parse"), ("i2", True, "s1", "parse"),  # i2 repeats i1's names
        ("i3", True, "s2", "parse"),  # the same names from another seed: kept
        ("i4", True, "s1", ""), ("i5", True, "s1", ""),  # no top-level function: never grouped
        ("i6", True, "s1", "parse,tokens"),  # another set of names: kept
        ("i7", True, "s3", "walk"), ("e0", False, "s3", "walk"),  # an earlier sft row wins
    ], "instruction_id string, is_new boolean, seed_id string, names string")
    expected = spark.createDataFrame([("i2", "i1", "parse"), ("i7", "e0", "walk")],
                                     "instruction_id string, kept_id string, names string")
    same(same_function_names(nodes), expected)


# --- select: exact duplicates ------------------------------------------------------------

def test_exact_duplicates_keep_an_existing_row_else_the_smallest_new_id(spark):
    nodes = spark.createDataFrame([
        ("n0", True, "x"), ("e1", False, "x"), ("n2", True, "x"),  # e1 existed: it wins over n0
        ("n5", True, "y"), ("n3", True, "y"),  # new only: n3 is kept
        ("n4", True, "z"),  # unique
        ("e2", False, "w"), ("e3", False, "w"),  # existing rows are never reported
    ], "instruction_id string, is_new boolean, _text string")
    expected = spark.createDataFrame(
        [("n0", "e1"), ("n2", "e1"), ("n5", "n3")], "instruction_id string, kept_id string")
    same(exact_duplicates(nodes, "_text"), expected)


# --- select: choose and verdict summary ------------------------------------------------------

RESPONSES = "response_id string, instruction_id string, response string"
EXECUTIONS = "response_id string, status string, passed boolean"


def test_choose_takes_one_passing_response_by_the_documented_draw(spark):
    responses = spark.createDataFrame([
        ("r1", "i1", "one"), ("r2", "i1", "two"), ("r3", "i1", "three"), ("r4", "i1", "four"),
        ("r5", "i2", "five"),
        ("r6", "i3", "six"), ("r7", "i3", "seven"),
        ("r8", "i4", "eight"),
    ], RESPONSES)
    executions = spark.createDataFrame([
        ("r1", "passed", True), ("r2", "failed", False), ("r3", "passed", True),
        ("r4", "passed", True),
        ("r5", "failed", False),  # i2: nothing passed
        ("r6", "timeout", False), ("r7", "passed", True),  # i3: r7 is the only choice
    ], EXECUTIONS)  # i4: r8 never ran
    for seed in (0, 42, 7):
        chosen = choose(responses, executions, seed)
        # Documented draw: the passing response first in sha256("<seed>:<iid>:<rid>") order.
        first = min(["r1", "r3", "r4"],
                    key=lambda rid, seed=seed: hashlib.sha256(f"{seed}:i1:{rid}".encode()).digest())
        text = {"r1": "one", "r3": "three", "r4": "four"}[first]
        same(chosen, spark.createDataFrame([(first, "i1", text), ("r7", "i3", "seven")], RESPONSES))


def test_verdict_summary_counts_each_status(spark):
    responses = spark.createDataFrame([
        ("r1", "i1", "a"), ("r2", "i1", "b"), ("r3", "i1", "c"),
        ("r4", "i2", "d"),
        ("r5", "i3", "e"), ("r6", "i3", "f"),
    ], RESPONSES)
    executions = spark.createDataFrame([
        ("r1", "timeout", False), ("r2", "failed", False), ("r3", "failed", False),
        ("r5", "crashed", False),
    ], EXECUTIONS)  # r4 and r6 never ran: "not runnable"
    expected = spark.createDataFrame([
        ("i1", "0 of 3 responses passed (failed 2, timeout 1)"),
        ("i2", "0 of 1 responses passed (not runnable 1)"),
        ("i3", "0 of 2 responses passed (crashed 1, not runnable 1)"),
    ], "instruction_id string, detail string")
    same(verdict_summary(responses, executions), expected)


def test_choose_never_picks_placeholder_code_when_sanitizing(spark):
    from jobs.stages.select import choose
    from udfs.sanitize import SanitizeOptions

    responses = spark.createDataFrame([
        ("i1", "r1", "def f():\n    raise NotImplementedError\n"),
        ("i1", "r2", "def f():\n    return 1  # TODO later\n"),
        ("i1", "r3", "def f():\n    return 1\n"),
        ("i2", "r4", "def g():\n    pass  # your code here\n"),
    ], "instruction_id string, response_id string, code string")
    executions = spark.createDataFrame([(r, True) for r in ("r1", "r2", "r3", "r4")],
                                       "response_id string, passed boolean")
    picked = {r["instruction_id"]: r["response_id"]
              for r in choose(responses, executions, seed=0, sanitizing=SanitizeOptions()).collect()}
    assert picked == {"i1": "r3"}  # i2 has no usable response left: no_usable_response
    # Off, every passing response is a candidate; over many seeds the stubs get drawn.
    drawn = {r["response_id"] for seed in range(12)
             for r in choose(responses, executions, seed=seed).where("instruction_id = 'i1'").collect()}
    assert drawn > {"r3"}


# --- select: the published global cleaning ---------------------------------------------------

CLAIMS_COLUMNS = ["response_id", "instruction_id", "kept", "kind", "kept_id"]


def test_the_walk_checks_stored_keys_first_then_goes_first_come_in_the_shuffle(spark):
    from jobs.ops.first_come import walk

    pairs = spark.createDataFrame([
        ("r1", "i1", ["I1", "R1", "parse"]),  # its function names are an earlier night's
        ("r2", "i2", ["I2", "R0", "walk"]),  # response and names both taken: response first
        ("r3", "i3", ["I3", "R3", "solve"]),  # r3 and r4 share "solve": the shuffle decides
        ("r4", "i4", ["I4", "R4", "solve"]),
        ("r5", "i5", ["I5", "R5", "fresh"]),
    ], "response_id string, instruction_id string, _keys array<string>")
    stored = spark.createDataFrame([("e0", ["I0", "R0", "parse"]), ("e9", ["I9", "R9", "walk"])],
                                   "instruction_id string, dedup_keys array<string>")
    for seed in (0, 1, 2, 3):
        first, second = sorted(["r3", "r4"], key=lambda rid, seed=seed: hashlib.sha256(f"{seed}:{rid}".encode()).hexdigest())
        owner = {"r3": "i3", "r4": "i4"}
        expected = {
            ("r1", "i1", False, "function_names", "e0"),
            ("r2", "i2", False, "response", "e0"),
            (first, owner[first], True, None, None),
            (second, owner[second], False, "function_names", owner[first]),
            ("r5", "i5", True, None, None),
        }
        got = {tuple(row[c] for c in CLAIMS_COLUMNS) for row in walk(pairs, stored, seed).collect()}
        assert got == expected, seed
