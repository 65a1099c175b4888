"""The dedup stage through local Spark and Delta, on planted near-duplicate families.

Stage runs cost ~15-20 s each on two cores, so one module-scoped lake is shared: a first
snapshot, a re-run, an incremental second snapshot, and a fresh lake for determinism.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.core.config import load_config
from jobs.core.context import Context
from jobs.core.readers import REPRESENTATIVES, functions_through
from jobs.core.runner import run
from jobs.ops.components import connected_components
from jobs.ops.lsh import (
    BAND_SCHEMA,
    LSHParams,
    band_choice,
    band_keys,
    candidate_pairs,
    confirmed_edges,
)
from jobs.stages import dedup
from schemas import CLUSTERS, FUNCTIONS, MINHASHES, PROGRESS, REJECTS, TYPECHECK
from schemas.outcome import Reason
from tests import minhash_reference
from tests.lakes import new_context
from udfs import minhash
from udfs.extract import extract_file

pytestmark = pytest.mark.spark

MOVING_AVERAGE = '''def moving_average(values, window):
    """Return the simple moving average of values over a sliding window."""
    if window <= 0:
        raise ValueError("window must be positive")
    averages = []
    total = 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        if index >= window - 1:
            averages.append(total / window)
    return averages
'''

PARSE_HEADERS = '''def parse_headers(lines):
    """Parse HTTP-style header lines into a dict with lower-cased names."""
    headers = {}
    current = None
    for line in lines:
        if not line.strip():
            break
        if line[0] in " \\t" and current is not None:
            headers[current] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        current = name.strip().lower()
        headers[current] = value.strip()
    return headers
'''

CHUNKED = '''def chunked(items, size, fill=None):
    """Split items into lists of length size, padding the last one with fill."""
    if size < 1:
        raise ValueError("size must be at least 1")
    chunks = []
    for start in range(0, len(items), size):
        chunk = list(items[start:start + size])
        if len(chunk) < size:
            chunk.extend([fill] * (size - len(chunk)))
        chunks.append(chunk)
    return chunks
'''

LEVENSHTEIN = '''def levenshtein(source, target):
    """Edit distance between two strings with unit insert, delete and substitute costs."""
    previous = list(range(len(target) + 1))
    for i, left in enumerate(source, start=1):
        current = [i]
        for j, right in enumerate(target, start=1):
            cost = 0 if left == right else 1
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        previous = current
    return previous[-1]
'''

FLATTEN = '''def flatten(nested, depth=-1):
    """Flatten nested lists and tuples up to depth levels (all levels when negative)."""
    flat = []
    for item in nested:
        if isinstance(item, (list, tuple)) and depth != 0:
            flat.extend(flatten(item, depth - 1))
        else:
            flat.append(item)
    return flat
'''


# --- near-duplicate variants ------------------------------------------------------------

def renamed(code: str, old: str, new: str) -> str:
    return re.sub(rf"\b{old}\b", new, code)


def reformatted(code: str) -> str:
    """Two-space indents, a blank line between statements, padded commas."""
    lines = []
    for line in code.split("\n"):
        stripped = line.lstrip(" ")
        lines.append(" " * ((len(line) - len(stripped)) // 2) + stripped.replace(", ", " ,  "))
    return "\n\n".join(lines)


def commented(code: str) -> str:
    lines = code.split("\n")
    note = "    # Kept in sync with the caller: see the module notes."
    return "\n".join([*lines[:2], note, *lines[2:-2], lines[-2] + "  # done", lines[-1]])


def one_more_line(code: str) -> str:
    lines = code.split("\n")
    return "\n".join([*lines[:2], "    checked = None", *lines[2:]])


@dataclass(frozen=True)
class Planted:
    code: str
    stars: int | None
    passed: bool = True


def family(base: str, rename: tuple[str, str], stars: list[int | None]) -> list[Planted]:
    variants = [base, renamed(base, *rename), reformatted(base), commented(base), one_more_line(base)]
    return [Planted(code, star) for code, star in zip(variants, stars, strict=True)]


FAMILIES = {
    # the renamed copy has the most stars
    "moving_average": family(MOVING_AVERAGE, ("averages", "result"), [10, 50, 3, None, 7]),
    # two copies tie on stars: the smaller id wins
    "parse_headers": family(PARSE_HEADERS, ("value", "rest"), [20, 5, 1, 20, None]),
    "chunked": family(CHUNKED, ("chunks", "out"), [100, 2, 2, 2, 2]),
}
LONER = Planted(LEVENSHTEIN, 4)
# A copy of the loner that failed pyright: not dedup's input, so the loner stays alone.
FAILED_COPY = Planted(renamed(LEVENSHTEIN, "cost", "step"), 999, passed=False)
FIRST_SNAPSHOT = [*(p for members in FAMILIES.values() for p in members), LONER, FAILED_COPY]

# Second snapshot: a copy of an existing seed with more stars than it, a copy of the
# loner, and a new family of two.
SEED_COPY = Planted(one_more_line(renamed(MOVING_AVERAGE, "averages", "result")), 10_000)
LONER_COPY = Planted(renamed(LEVENSHTEIN, "previous", "before"), 1)
NEW_PAIR = [Planted(FLATTEN, 3), Planted(commented(FLATTEN), 8)]
SECOND_SNAPSHOT = [SEED_COPY, LONER_COPY, *NEW_PAIR]


def fid(code: str) -> str:
    (fn,) = extract_file(code, 1_000_000)
    return fn.function_id


def function_rows(planted: list[Planted]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    functions, verdicts = [], []
    for p in planted:
        result = extract_file(p.code, 1_000_000)
        assert isinstance(result, list) and len(result) == 1, p.code
        fn = result[0]
        functions.append((
            fn.function_id, fn.name, fn.signature, fn.docstring, fn.code, fn.imports,
            fn.line_count, fn.arg_count, fn.has_return,
            fn.function_id[:40], "acme/tools", f"{fn.name}.py", ["MIT"], p.stars, "test",
        ))
        verdicts.append((fn.function_id, p.passed, None if p.passed else "reportX", None, None,
                         "1.1.411", "test", "pyright"))
    return functions, verdicts


def load_snapshot(ctx: Context, planted: list[Planted]) -> None:
    functions, verdicts = function_rows(planted)
    ctx.lake.insert_new(FUNCTIONS, ctx.spark.createDataFrame(functions, FUNCTIONS.schema))
    ctx.lake.insert_new(TYPECHECK, ctx.spark.createDataFrame(verdicts, TYPECHECK.schema))


def context(lake: Path) -> Context:
    return new_context(lake)


def cluster_rows(ctx: Context) -> list[tuple[Any, ...]]:
    table = ctx.lake.read(CLUSTERS)
    return sorted(tuple(r) for r in table.select(*[c for c in CLUSTERS.columns if c != "run_id"]).collect())


def clusters_by_id(ctx: Context) -> dict[str, dict[str, Any]]:
    return {r["function_id"]: r.asDict() for r in ctx.lake.read(CLUSTERS).collect()}


def expected_rep(members: list[Planted]) -> str:
    passed = [p for p in members if p.passed]
    return min(passed, key=lambda p: (-(p.stars if p.stars is not None else -1), fid(p.code))).code


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> dict[str, Any]:
    """One lake through: first snapshot, re-run, second snapshot (state saved in between)."""
    root = tmp_path_factory.mktemp("dedup") / "lake"
    ctx = context(root)
    load_snapshot(ctx, FIRST_SNAPSHOT)
    state: dict[str, Any] = {"root": root, "ctx": ctx}
    state["first"] = run(dedup.STAGE, ctx)
    state["first_clusters"] = cluster_rows(ctx)
    state["first_rejects"] = sorted(tuple(r) for r in ctx.lake.read(REJECTS).drop("run_id").collect())
    state["first_signatures"] = sorted(
        (r["function_id"], bytes(r["signature"])) for r in ctx.lake.read(MINHASHES).collect()
    )
    state["first_minhashes"] = len(state["first_signatures"])
    state["first_progress"] = ctx.lake.read(PROGRESS).count()

    state["rerun"] = run(dedup.STAGE, context(root))
    state["rerun_clusters"] = cluster_rows(ctx)
    state["rerun_rejects"] = sorted(tuple(r) for r in ctx.lake.read(REJECTS).drop("run_id").collect())
    state["rerun_minhashes"] = ctx.lake.read(MINHASHES).count()
    state["rerun_progress"] = ctx.lake.read(PROGRESS).count()

    second = context(root)
    load_snapshot(second, SECOND_SNAPSHOT)
    state["second"] = run(dedup.STAGE, second)
    return state


def test_planted_families_end_in_one_cluster_with_the_most_starred_representative(lake):
    clusters = {row[0]: row for row in lake["first_clusters"]}  # (id, cluster_id, size, is_rep)
    passed = [p for p in FIRST_SNAPSHOT if p.passed]
    assert set(clusters) == {fid(p.code) for p in passed}  # the failed copy never reached dedup
    for name, members in FAMILIES.items():
        rep = fid(expected_rep(members))
        rows = [clusters[fid(p.code)] for p in members]
        assert {r[1] for r in rows} == {rep}, name
        assert {r[2] for r in rows} == {len(members)}, name
        assert [r[0] for r in rows if r[3]] == [rep], name
    loner = clusters[fid(LONER.code)]
    assert loner[1:] == (fid(LONER.code), 1, True)
    assert lake["first"].rows_in == len(passed)
    assert lake["first"].rows_out == len(FAMILIES) + 1  # the representatives
    assert lake["first"].rows_rejected == sum(len(m) - 1 for m in FAMILIES.values())
    assert lake["first_minhashes"] == len(passed)


def test_rejects_name_the_representative_and_the_jaccard(lake):
    by_item = {r[0]: r for r in lake["first_rejects"]}  # (item_id, stage, reason, detail, source_key)
    cfg = load_config(None).dedup
    bands, rows = dedup.band_choice(LSHParams.from_config(cfg))
    for members in FAMILIES.values():
        rep_code = expected_rep(members)
        rep = fid(rep_code)
        for p in members:
            if fid(p.code) == rep:
                assert fid(p.code) not in by_item
                continue
            _, stage, reason, detail, _ = by_item[fid(p.code)]
            assert (stage, reason) == ("dedup", Reason.NEAR_DUPLICATE)
            prefix = f"near duplicate of {rep}: Jaccard "
            assert detail.startswith(prefix)
            assert detail.endswith(f"(LSH {bands} bands x {rows} rows)")
            # The exact Jaccard of the two shingle sets, not an estimate.
            a, b = minhash.shingles(p.code, cfg.shingle_size), minhash.shingles(rep_code, cfg.shingle_size)
            said = float(detail[len(prefix):].split(";")[0].split(" ")[0])
            assert said == pytest.approx(len(a & b) / len(a | b), abs=0.0005)


def test_spark_components_equal_the_pure_reference(lake, spark):
    ctx = lake["ctx"]
    cfg = ctx.cfg.dedup
    rows = lake["first_signatures"]  # the first snapshot's, before the second one arrived
    params = LSHParams.from_config(cfg)
    stored = spark.createDataFrame(rows, "id string, signature binary")
    nodes = stored.withColumn("is_new", F.lit(True))
    edges = confirmed_edges(candidate_pairs(band_keys(nodes, params)), stored, params)
    spark_edges = {(r["lo"], r["hi"]) for r in edges.collect()}

    ids = [i for i, _ in rows]
    sigs = minhash.signatures_from_bytes([s for _, s in rows], cfg.num_perm)
    bands, band_rows = band_choice(params)
    pairs = minhash_reference.candidate_pairs(ids, sigs, bands, band_rows)
    pure_edges = minhash_reference.confirmed_edges(pairs, dict(zip(ids, sigs, strict=True)), cfg.threshold)
    assert spark_edges == pure_edges
    assert len(pure_edges) >= sum(len(m) - 1 for m in FAMILIES.values())

    labels, _ = connected_components(edges, cfg.max_iterations)
    on_edges = {node for edge in pure_edges for node in edge}
    pure = minhash_reference.connected_components(pure_edges, ids)
    assert {r["id"]: r["component"] for r in labels.collect()} == {
        node: label for node, label in pure.items() if node in on_edges
    }
    # And the stage's clusters are exactly those components.
    groups: dict[str, set[str]] = {}
    for row in lake["first_clusters"]:
        groups.setdefault(row[1], set()).add(row[0])
    pure_groups: dict[str, set[str]] = {}
    for node, label in pure.items():
        pure_groups.setdefault(label, set()).add(node)
    assert sorted(map(sorted, groups.values())) == sorted(map(sorted, pure_groups.values()))


def test_verify_none_keeps_every_band_collision(spark):
    """text-dedup's way (verify: none): a candidate pair is a duplicate however low its
    Jaccard. These two signatures share the first 4 of 16 slots: an estimate of 0.25."""
    base = np.arange(16, dtype=np.uint32)
    far = base.copy()
    far[4:] += 100
    stored = spark.createDataFrame(list(zip(["a", "b"], minhash.signatures_to_bytes(np.stack([base, far])),
                                            strict=True)), "id string, signature binary")
    pairs = spark.createDataFrame([("a", "b")], "lo string, hi string")
    params = LSHParams(threshold=0.5, num_perm=16, shingle_size=5, seed=1, max_iterations=10)
    assert confirmed_edges(pairs, stored, replace(params, verify="estimate")).count() == 0
    kept = confirmed_edges(pairs, stored, replace(params, verify="none")).collect()
    assert [(r["lo"], r["hi"], r["jaccard"]) for r in kept] == [("a", "b", 0.25)]


def test_components_on_long_chains_converge_to_the_smallest_id(spark):
    rng = random.Random(3)
    nodes = rng.sample([f"n{i:03d}" for i in range(1000)], 90)
    # Two long paths in random id order (diameter 40: min-label propagation would need
    # 40 rounds), a star, and a few chords.
    edges = [*itertools.pairwise(nodes[:40]), *itertools.pairwise(nodes[40:80])]
    edges += [(nodes[80], other) for other in nodes[81:90]]
    edges += [(rng.choice(nodes[:40]), rng.choice(nodes[:40])) for _ in range(5)]
    frame = spark.createDataFrame([(min(a, b), max(a, b)) for a, b in edges], "lo string, hi string")
    labels, iterations = connected_components(frame, 50)
    pure = minhash_reference.connected_components(edges, [])
    expected = spark.createDataFrame(sorted(pure.items()), "id string, component string")
    assert_df_equality(labels, expected, ignore_row_order=True, ignore_nullable=True)
    assert 1 <= iterations < 20


def test_huge_buckets_link_to_their_smallest_member_and_skip_seed_pairs(spark):
    keys = spark.createDataFrame(
        [*[(f"b{i}", True, 0, 7) for i in range(5)],  # one big bucket of new functions
         ("s1", False, 1, 9), ("s2", False, 1, 9), ("n1", True, 1, 9),  # two seeds and a new one
         ("s1", False, 2, 4), ("s2", False, 2, 4)],  # seeds only: ignored
        BAND_SCHEMA,
    )
    pairs = {(r["lo"], r["hi"]) for r in candidate_pairs(keys, max_full_bucket=3).collect()}
    assert pairs == {("b0", "b1"), ("b0", "b2"), ("b0", "b3"), ("b0", "b4"),
                     ("n1", "s1"), ("n1", "s2")}


def test_rerun_adds_nothing(lake):
    assert lake["rerun"].rows_in == 0
    assert lake["rerun_clusters"] == lake["first_clusters"]
    assert lake["rerun_rejects"] == lake["first_rejects"]
    assert lake["rerun_minhashes"] == lake["first_minhashes"]
    assert lake["rerun_progress"] == lake["first_progress"]


def test_second_snapshot_joins_existing_seeds_and_keeps_them_representative(lake):
    ctx = lake["ctx"]
    clusters = clusters_by_id(ctx)
    seed = fid(expected_rep(FAMILIES["moving_average"]))
    copy = clusters[fid(SEED_COPY.code)]
    assert (copy["cluster_id"], copy["is_representative"]) == (seed, False)  # despite 10k stars
    assert clusters[seed]["is_representative"] and clusters[seed]["cluster_id"] == seed
    family_ids = {fid(p.code) for p in FAMILIES["moving_average"]} | {fid(SEED_COPY.code)}
    assert {clusters[i]["cluster_size"] for i in family_ids} == {len(family_ids)}  # sizes refreshed

    loner = fid(LONER.code)
    assert clusters[fid(LONER_COPY.code)]["cluster_id"] == loner
    assert clusters[loner]["is_representative"] and clusters[loner]["cluster_size"] == 2

    pair_rep = fid(NEW_PAIR[1].code)  # more stars
    assert {clusters[fid(p.code)]["cluster_id"] for p in NEW_PAIR} == {pair_rep}
    assert clusters[pair_rep]["is_representative"]

    summary = lake["second"]
    assert (summary.rows_in, summary.rows_rejected) == (len(SECOND_SNAPSHOT), 3)
    rejects = {r["item_id"]: r["detail"] for r in ctx.lake.read(REJECTS).where(F.col("stage") == "dedup").collect()}
    assert rejects[fid(SEED_COPY.code)].startswith(f"near duplicate of {seed}:")
    assert ctx.lake.read(MINHASHES).count() == lake["first_minhashes"] + len(SECOND_SNAPSHOT)
    untouched = {fid(p.code) for name in ("parse_headers", "chunked") for p in FAMILIES[name]}
    assert [r for r in cluster_rows(ctx) if r[0] in untouched] == [
        r for r in lake["first_clusters"] if r[0] in untouched
    ]

    seed_rows = functions_through(ctx, REPRESENTATIVES).collect()
    assert list(seed_rows[0].asDict()) == FUNCTIONS.columns
    assert sorted(r["function_id"] for r in seed_rows) == sorted(
        i for i, row in clusters.items() if row["is_representative"]
    )
    assert {r["name"] for r in seed_rows} == {"moving_average", "parse_headers", "chunked",
                                              "levenshtein", "flatten"}


def test_signature_bytes_round_trip():
    sigs = minhash.MinHasher(16, 1).signatures([{"a b"}, {"c d", "e f"}])
    blobs = minhash.signatures_to_bytes(sigs)
    assert [len(b) for b in blobs] == [64, 64]
    np.testing.assert_array_equal(minhash.signatures_from_bytes(blobs, 16), sigs)
    with pytest.raises(ValueError, match="expected 64"):
        minhash.signatures_from_bytes([blobs[0][:60]], 16)
