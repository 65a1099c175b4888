"""dedup: MinHash-LSH near-duplicate clusters of the type-checked functions (`clusters`).

Identify, then remove, as two clear steps:

1. `run` stores the MinHash signatures of the pending functions in `minhashes`
   (insert-only), so a later snapshot compares its new functions against the existing
   seeds without re-hashing them;
2. `transform`, one global operation (never chunked): band keys -> candidate pairs ->
   pairs confirmed on the signature-estimated Jaccard (banding alone lets pairs at
   0.3-0.4 through) -> connected components (large-star/small-star over DataFrames)
   -> one representative per component. Every pending function gets a `clusters` row;
   the others of its component are also `near_duplicate` rejects.

Incremental rule: existing representatives ("seeds") stay representatives. A component
that reaches a seed joins the smallest seed in it and all its new functions become
rejects; edges between two seeds are ignored (an earlier run judged them distinct).
New functions are compared with seeds only, not with earlier rejects.

`minhashes` is only valid for one (num_perm, seed, shingle_size): a run whose num_perm
differs from the stored signatures stops; after changing seed or shingle size, start
the dedup tables afresh.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from jobs.core.config import DedupConfig
from jobs.core.context import Context
from jobs.core.runner import (
    ITEM_ID,
    OUTCOME_COLUMNS,
    REJECT_DETAIL,
    REJECT_REASON,
    SOURCE_KEY,
    StageError,
    StageSummary,
    pending_input,
    run_stage,
)
from schemas import CLUSTERS, FUNCTIONS, MINHASHES
from udfs.minhash import (
    band_hash_matrix,
    cached_hasher,
    jaccard_rows,
    optimal_bands,
    shingles,
    signatures_from_bytes,
    signatures_to_bytes,
)

log = logging.getLogger("selfalign")

STAGE = "dedup"
KEY = "function_id"

# Buckets up to this size yield all their pairs; a larger bucket (boilerplate such as
# trivial getters sharing a band) links each member to the bucket's smallest id only,
# so a bucket of n costs n - 1 candidates instead of n^2 / 2. A member of a big bucket
# still meets its real near-duplicates through its ~50 other bands.
FULL_PAIRS_MAX_BUCKET = 50

SIGNATURE_SCHEMA = StructType(
    [
        StructField("function_id", StringType(), False),
        StructField("signature", BinaryType(), False),
        StructField("num_perm", IntegerType(), False),
    ]
)
BAND_SCHEMA = StructType(
    [
        StructField("function_id", StringType(), False),
        StructField("is_new", BooleanType(), False),
        StructField("band", IntegerType(), False),
        StructField("key", LongType(), False),
    ]
)
OUTCOME_SCHEMA = StructType(
    [StructField(f.name, f.dataType, True) for f in CLUSTERS.schema.fields if f.name != "run_id"]
    + [StructField(name, StringType(), True) for name in OUTCOME_COLUMNS]
)


def band_choice(cfg: DedupConfig) -> tuple[int, int]:
    """(bands, rows) minimising the weighted LSH error at the threshold."""
    return optimal_bands(cfg.threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight)


# --- step 1: signatures -----------------------------------------------------------------

def signature_batches(batches: Iterator[pd.DataFrame], cfg: DedupConfig) -> Iterator[pd.DataFrame]:
    hasher = cached_hasher(cfg.num_perm, cfg.seed)
    for batch in batches:
        sets = [shingles(code or "", cfg.shingle_size) for code in batch["code"]]
        yield pd.DataFrame({
            "function_id": batch["function_id"],
            "signature": signatures_to_bytes(hasher.signatures(sets)),
            "num_perm": np.full(len(batch), cfg.num_perm, dtype=np.int32),
        })


def signatures(functions: DataFrame, cfg: DedupConfig) -> DataFrame:
    """(function_id, code) -> (function_id, signature, num_perm)."""
    return functions.select("function_id", "code").mapInPandas(
        lambda it: signature_batches(it, cfg), schema=SIGNATURE_SCHEMA
    )


# --- step 2: candidates and confirmed edges ---------------------------------------------

def band_key_batches(batches: Iterator[pd.DataFrame], num_perm: int, bands: int,
                     rows: int) -> Iterator[pd.DataFrame]:
    for batch in batches:
        keys = band_hash_matrix(signatures_from_bytes(batch["signature"].tolist(), num_perm), bands, rows)
        yield pd.DataFrame({
            "function_id": np.repeat(batch["function_id"].to_numpy(), bands),
            "is_new": np.repeat(batch["is_new"].to_numpy(dtype=bool), bands),
            "band": np.tile(np.arange(bands, dtype=np.int32), len(batch)),
            "key": keys.reshape(-1),
        })


def band_keys(nodes: DataFrame, cfg: DedupConfig) -> DataFrame:
    """(function_id, is_new, signature) -> one (function_id, is_new, band, key) row per band."""
    bands, rows = band_choice(cfg)
    return nodes.select("function_id", "is_new", "signature").mapInPandas(
        lambda it: band_key_batches(it, cfg.num_perm, bands, rows), schema=BAND_SCHEMA
    )


def candidate_pairs(keys: DataFrame, max_full_bucket: int = FULL_PAIRS_MAX_BUCKET) -> DataFrame:
    """(lo, hi) id pairs, lo < hi, sharing a band key, at least one of them new."""
    buckets = (
        keys.groupBy("band", "key")
        .agg(
            F.count(F.lit(1)).alias("size"),
            F.min(F.struct("function_id", "is_new")).alias("anchor"),
            F.max(F.col("is_new").cast("int")).alias("any_new"),
        )
        .where((F.col("size") >= 2) & (F.col("any_new") == 1))
    )
    members = keys.join(buckets, on=["band", "key"], how="inner")

    small = members.where(F.col("size") <= max_full_bucket)
    left = small.select("band", "key", F.col("function_id").alias("lo"), F.col("is_new").alias("lo_new"))
    right = small.select("band", "key", F.col("function_id").alias("hi"), F.col("is_new").alias("hi_new"))
    all_pairs = (
        left.join(right, on=["band", "key"], how="inner")
        .where((F.col("lo") < F.col("hi")) & (F.col("lo_new") | F.col("hi_new")))
        .select("lo", "hi")
    )

    new_side = F.col("is_new") | F.col("anchor.is_new")
    star = members.where(
        (F.col("size") > max_full_bucket) & (F.col("function_id") != F.col("anchor.function_id")) & new_side
    ).select(F.col("anchor.function_id").alias("lo"), F.col("function_id").alias("hi"))
    return all_pairs.unionByName(star).distinct()


def estimated_jaccard(num_perm: int) -> Callable[[Column, Column], Column]:
    @F.pandas_udf(DoubleType())
    def jaccard(left: pd.Series, right: pd.Series) -> pd.Series:
        return pd.Series(jaccard_rows(signatures_from_bytes(left.tolist(), num_perm),
                                      signatures_from_bytes(right.tolist(), num_perm)))

    return jaccard


def with_jaccard(pairs: DataFrame, left: str, right: str, sigs: DataFrame, num_perm: int) -> DataFrame:
    """`pairs` plus `jaccard`, the signature-estimated similarity of columns left and right."""
    jaccard = estimated_jaccard(num_perm)
    return (
        pairs.join(sigs.select(F.col("function_id").alias(left), F.col("signature").alias("_sig_l")),
                   on=left, how="inner")
        .join(sigs.select(F.col("function_id").alias(right), F.col("signature").alias("_sig_r")),
              on=right, how="inner")
        .withColumn("jaccard", jaccard(F.col("_sig_l"), F.col("_sig_r")))
        .drop("_sig_l", "_sig_r")
    )


def confirmed_edges(pairs: DataFrame, sigs: DataFrame, cfg: DedupConfig) -> DataFrame:
    """Candidate (lo, hi) pairs whose estimated Jaccard reaches the threshold, with it."""
    scored = with_jaccard(pairs, "lo", "hi", sigs, cfg.num_perm)
    return scored.where(F.col("jaccard") >= F.lit(cfg.threshold)).select("lo", "hi", "jaccard")


# --- step 3: connected components -------------------------------------------------------

def _large_star(edges: DataFrame) -> DataFrame:
    # Each node's larger neighbours are re-linked to the smallest id of its neighbourhood.
    both = edges.select(F.col("lo").alias("node"), F.col("hi").alias("nbr")).unionByName(
        edges.select(F.col("hi").alias("node"), F.col("lo").alias("nbr"))
    )
    smallest = both.groupBy("node").agg(F.min("nbr").alias("nbr")).select(
        F.col("node").alias("lo"), F.least(F.col("node"), F.col("nbr")).alias("smallest")
    )
    return edges.join(smallest, on="lo", how="inner").select(
        "hi", F.col("smallest").alias("lo")
    ).distinct()


def _small_star(edges: DataFrame) -> DataFrame:
    # Each node and its smaller neighbours are linked to the smallest of them.
    smallest = edges.groupBy("hi").agg(F.min("lo").alias("smallest"))
    joined = edges.join(smallest, on="hi", how="inner")
    neighbours = joined.where(F.col("lo") != F.col("smallest")).select(
        F.col("lo").alias("hi"), F.col("smallest").alias("lo")
    )
    itself = smallest.select("hi", F.col("smallest").alias("lo"))
    return neighbours.unionByName(itself).distinct()


def _is_star_forest(edges: DataFrame) -> bool:
    """Converged: every node has one parent and every parent is a root, so each
    component is a star around its smallest id. One Spark job."""
    has_parent = edges.select(F.col("hi").alias("lo"), F.lit(1).alias("_lo_has_parent")).distinct()
    worst = (
        edges.join(has_parent, on="lo", how="left")
        .groupBy("hi")
        .agg(F.count(F.lit(1)).alias("parents"), F.max("_lo_has_parent").alias("chained"))
        .agg(F.max("parents").alias("parents"), F.max("chained").alias("chained"))
        .first()
    )
    return worst is None or ((worst["parents"] or 0) <= 1 and worst["chained"] is None)


def connected_components(edges: DataFrame, max_iterations: int) -> tuple[DataFrame, int]:
    """Undirected (lo, hi) edges -> ((function_id, component), iterations), component being
    the smallest id of the node's component, for every node on an edge.

    The alternating large-star/small-star algorithm (Kiveris et al. 2014, as in
    GraphFrames) converges in O(log^2 n) rounds where min-label propagation needs the
    graph's diameter. Each round is localCheckpointed (DataFrame API, no SparkContext)
    because the convergence test reads it anyway and the plan would otherwise grow
    with every round.
    """
    current = edges.where(F.col("lo") != F.col("hi")).select(
        F.greatest("lo", "hi").alias("hi"), F.least("lo", "hi").alias("lo")
    ).distinct().localCheckpoint()
    iterations = 0
    converged = _is_star_forest(current)
    while not converged and iterations < max_iterations:
        current = _small_star(_large_star(current)).localCheckpoint()
        iterations += 1
        converged = _is_star_forest(current)
    if not converged:
        log.warning("[dedup] components did not converge in %d iterations (dedup.max_iterations); "
                    "some near-duplicate clusters may stay split", max_iterations)
    # At convergence each node has one parent, its root; before it, the smallest
    # parent is still an id of the same component, so the result is never wrong, only split.
    labels = current.select(F.col("hi").alias("function_id"), F.col("lo").alias("component")).unionByName(
        current.select(F.col("lo").alias("function_id"), F.col("lo").alias("component"))
    ).groupBy("function_id").agg(F.min("component").alias("component"))
    return labels, iterations


# --- step 4: representatives and outcome rows -------------------------------------------

def _best_link(edges: DataFrame) -> DataFrame:
    """Each node's most similar confirmed neighbour (ties: smallest id)."""
    both = edges.select(F.col("lo").alias("function_id"), F.col("hi").alias("link"), "jaccard").unionByName(
        edges.select(F.col("hi").alias("function_id"), F.col("lo").alias("link"), "jaccard")
    )
    best = Window.partitionBy("function_id").orderBy(F.col("jaccard").desc(), F.col("link").asc())
    return (
        both.withColumn("_rank", F.row_number().over(best))
        .where(F.col("_rank") == 1)
        .select("function_id", "link", F.col("jaccard").alias("link_jaccard"))
    )


def _detail(bands: int, rows: int) -> Column:
    lsh = f" (LSH {bands} bands x {rows} rows)"
    to_rep = F.format_string("near duplicate of %s: estimated Jaccard %.3f", F.col("cluster_id"),
                             F.col("rep_jaccard"))
    via = F.format_string("; linked by %s at %.3f", F.col("link"), F.col("link_jaccard"))
    return F.concat(to_rep, F.when(F.col("link") != F.col("cluster_id"), via).otherwise(F.lit("")),
                    F.lit(lsh))


def transform(functions: DataFrame, seeds: DataFrame, cfg: DedupConfig) -> DataFrame:
    """Pending functions (function_id, stars, signature) and existing seeds (function_id,
    signature, cluster_size) -> one outcome row per pending function."""
    bands, rows = band_choice(cfg)
    fresh = functions.select("function_id", "stars", "signature", F.lit(True).alias("is_new"))
    known = seeds.join(functions.select("function_id"), on="function_id", how="left_anti")
    nodes = fresh.unionByName(
        known.select("function_id", F.lit(None).cast("long").alias("stars"), "signature",
                     F.lit(False).alias("is_new"))
    )
    # Both read several times (bands, confirmation, representatives): computed once each.
    nodes = nodes.localCheckpoint()
    sigs = nodes.select("function_id", "signature")
    edges = confirmed_edges(candidate_pairs(band_keys(nodes, cfg)), sigs, cfg).localCheckpoint()
    labels, _ = connected_components(edges, cfg.max_iterations)

    members = (
        nodes.select("function_id", "stars", "is_new")
        .join(labels, on="function_id", how="left")
        .where(F.col("is_new") | F.col("component").isNotNull())  # seeds off the graph: untouched
        .withColumn("component", F.coalesce(F.col("component"), F.col("function_id")))
    )
    most_stars = Window.partitionBy("component").orderBy(
        F.col("stars").desc_nulls_last(), F.col("function_id").asc()
    )
    new_rep = (
        members.where(F.col("is_new"))
        .withColumn("_rank", F.row_number().over(most_stars))
        .where(F.col("_rank") == 1)
        .select("component", F.col("function_id").alias("new_rep"))
    )
    seed_size = known.select(F.col("function_id").alias("seed_rep"), F.col("cluster_size").alias("seed_size"))
    components = (
        members.groupBy("component")
        .agg(
            F.min(F.when(~F.col("is_new"), F.col("function_id"))).alias("seed_rep"),
            F.sum(F.col("is_new").cast("long")).alias("new_members"),
        )
        .join(new_rep, on="component", how="left")
        .join(seed_size, on="seed_rep", how="left")
        .select(
            "component",
            F.coalesce(F.col("seed_rep"), F.col("new_rep")).alias("cluster_id"),
            (F.coalesce(F.col("seed_size"), F.lit(0)) + F.col("new_members")).alias("cluster_size"),
        )
    )
    assigned = members.where(F.col("is_new")).join(components, on="component", how="inner")
    duplicates = with_jaccard(
        assigned.where(F.col("function_id") != F.col("cluster_id")).select("function_id", "cluster_id"),
        "function_id", "cluster_id", sigs, cfg.num_perm,
    ).select("function_id", F.col("jaccard").alias("rep_jaccard")).join(
        _best_link(edges), on="function_id", how="left"
    )
    is_rep = F.col("function_id") == F.col("cluster_id")
    return assigned.join(duplicates, on="function_id", how="left").select(
        "function_id",
        "cluster_id",
        F.col("cluster_size").cast("long").alias("cluster_size"),
        is_rep.alias("is_representative"),
        F.col("function_id").alias(SOURCE_KEY),
        F.col("function_id").alias(ITEM_ID),
        F.when(is_rep, F.lit(None).cast("string")).otherwise(F.lit("near_duplicate")).alias(REJECT_REASON),
        F.when(is_rep, F.lit(None).cast("string")).otherwise(_detail(bands, rows)).alias(REJECT_DETAIL),
    )


# --- the stage --------------------------------------------------------------------------

def pending(ctx: Context) -> DataFrame:
    """Type-checked functions (FUNCTIONS columns) not clustered yet."""
    from jobs.stages.typecheck import passed_functions  # lazily: importing dedup needs no typecheck

    return pending_input(ctx, STAGE, passed_functions(ctx), KEY)


def seeds(ctx: Context) -> DataFrame:
    """Cluster representatives (FUNCTIONS columns): the judge stage's input."""
    reps = ctx.lake.read(CLUSTERS).where(F.col("is_representative")).select(KEY)
    return ctx.lake.read(FUNCTIONS).join(reps, on=KEY, how="inner")


def _check_stored_width(ctx: Context) -> None:
    other = ctx.lake.read(MINHASHES).where(F.col("num_perm") != F.lit(ctx.cfg.dedup.num_perm))
    found = other.select("num_perm").take(1)
    if found:
        raise StageError(
            f"dedup: minhashes holds signatures with num_perm={found[0]['num_perm']} but "
            f"dedup.num_perm={ctx.cfg.dedup.num_perm}; keep the old value or start the "
            "minhashes and clusters tables afresh"
        )


def refresh_cluster_sizes(ctx: Context) -> int:
    """Set every clusters row's size to its cluster's current member count (new members
    joined existing seeds); returns the rows changed."""
    table = ctx.lake.read(CLUSTERS)
    counts = table.groupBy("cluster_id").agg(F.count(F.lit(1)).alias("members"))
    stale = (
        table.join(counts, on="cluster_id", how="inner")
        .where(F.col("cluster_size") != F.col("members"))
        .select(KEY, F.col("members").alias("cluster_size"))
        .localCheckpoint()
    )
    changed = stale.count()
    if changed:
        ctx.lake.update_changed(CLUSTERS, stale, ["cluster_size"])
    return changed


def run(ctx: Context) -> StageSummary:
    cfg = ctx.cfg.dedup
    bands, rows = band_choice(cfg)
    log.info("[dedup] LSH %d bands x %d rows for Jaccard >= %.2f over %d permutations "
             "(fp/fn weights %.2f/%.2f); buckets over %d members link to their smallest id",
             bands, rows, cfg.threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight,
             FULL_PAIRS_MAX_BUCKET)
    _check_stored_width(ctx)
    todo = pending(ctx)
    # Rows of earlier runs only: a run that crashed after writing clusters redoes its own rows.
    earlier = ctx.lake.read(CLUSTERS).join(todo.select(KEY), on=KEY, how="left_anti")
    seed_ids = earlier.where(F.col("is_representative")).select(KEY)

    # Signatures of the pending functions, and of any seed that lacks one, before clustering.
    stored = ctx.lake.read(MINHASHES).select(KEY)
    seed_code = ctx.lake.read(FUNCTIONS).join(seed_ids, on=KEY, how="inner").select(KEY, "code")
    to_hash = todo.select(KEY, "code").unionByName(seed_code).join(stored, on=KEY, how="left_anti")
    hashed = signatures(to_hash, cfg).localCheckpoint()
    if not hashed.isEmpty():  # a re-run hashes nothing and commits nothing
        ctx.lake.insert_new(MINHASHES, hashed.withColumn("run_id", F.lit(ctx.run_id)))

    sigs = ctx.lake.read(MINHASHES).select(KEY, "signature")
    sizes = earlier.groupBy(F.col("cluster_id").alias(KEY)).agg(F.count(F.lit(1)).alias("cluster_size"))
    known = seed_ids.join(sizes, on=KEY, how="inner").join(sigs, on=KEY, how="inner")
    summary = run_stage(
        ctx, STAGE, CLUSTERS, todo, KEY,
        transform=lambda part: transform(part.select(KEY, "stars").join(sigs, on=KEY, how="inner"), known, cfg),
        chunk_rows=sys.maxsize,  # a global operation: one chunk, whatever run.chunk_rows says
        verdicts=True,
    )
    refreshed = refresh_cluster_sizes(ctx)
    if refreshed:
        log.info("[dedup] refreshed cluster_size of %d existing rows", refreshed)
    return summary
