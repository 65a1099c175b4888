"""dedup: MinHash-LSH near-duplicate clusters of the type-checked functions (`clusters`).

Identify, then remove, as two clear steps:

1. a `before` hook stores the MinHash signatures of the pending functions in
   `minhashes` (insert-only), so a later snapshot compares its new functions against the
   existing representatives without re-hashing them;
2. `transform`, one global operation (never chunked): band keys (tuned for
   `candidate_threshold`, below the threshold, so pairs just above it are nearly all
   candidates) -> candidate pairs -> pairs confirmed on the exact Jaccard of their
   shingle sets, stored beside the signatures (banding alone lets pairs at 0.3 through)
   -> connected components (large-star/small-star over DataFrames); that chain is
   select's too (jobs/ops/near_duplicates.py) -> one representative per component.
   Every pending function gets a `clusters` row; the others of its component are also
   `near_duplicate` rejects.

Incremental rule: existing representatives stay representatives. A component that
reaches one joins the smallest in it and all its new functions become rejects; edges
between two existing representatives are ignored (an earlier run judged them distinct).
New functions are compared with representatives only, not with earlier rejects.

`minhashes` is only valid for one (num_perm, seed, shingle_size, tokenizer): a run whose
num_perm differs from the stored signatures stops; after changing seed, shingle size or
tokenizer, start the dedup tables afresh.

Stage order differs from the published seed pipeline: there near-dedup (text-dedup at
Jaccard 0.5) ran right after extraction, before every filter, so it chose one function per
cluster among all documented functions, and a cluster whose kept function later failed a
filter was lost whole. Here dedup reads the type-checked functions, so only those that
passed every rule, decontamination and pyright are clustered (conf/profiles/published.yaml).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.readers import TYPECHECKED, functions_through
from jobs.core.stage import WHOLE_INPUT, Stage, StageRun
from jobs.ops.lsh import FULL_PAIRS_MAX_BUCKET, LSHParams, band_choice, signatures
from jobs.ops.near_duplicates import near_duplicate_components, similarity
from schemas import CLUSTERS, FUNCTIONS, MINHASHES
from schemas.outcome import ITEM_ID, REJECT_DETAIL, REJECT_REASON, SOURCE_KEY, Reason, Source

log = logging.getLogger("selfalign")

NAME = Source.DEDUP
KEY = "function_id"


def from_nodes(df: DataFrame) -> DataFrame:
    return df.withColumnRenamed("id", KEY)


# --- step 4: representatives and outcome rows -------------------------------------------

def _best_link(edges: DataFrame) -> DataFrame:
    # edges: (lo, hi, jaccard) over function ids
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
    to_rep = F.format_string("near duplicate of %s: %s %.3f", F.col("cluster_id"), F.col("rep_measure"),
                             F.col("rep_jaccard"))
    via = F.format_string("; linked by %s at %.3f", F.col("link"), F.col("link_jaccard"))
    return F.concat(to_rep, F.when(F.col("link") != F.col("cluster_id"), via).otherwise(F.lit("")),
                    F.lit(lsh))


@dataclass(frozen=True)
class DedupSettings:
    params: LSHParams
    # Lazy tables, read when the transform runs (after the `before` hook stored signatures):
    signatures: DataFrame  # (function_id, signature, shingles) of every hashed function
    known: DataFrame  # existing representatives: (function_id, signature, shingles, cluster_size)
    to_hash: DataFrame  # (function_id, code) pending or representatives without a signature


def _cluster(functions: DataFrame, representatives: DataFrame, cfg: LSHParams) -> DataFrame:
    """Pending functions (function_id, stars, signature, shingles) and existing
    representatives (function_id, signature, shingles, cluster_size) -> one outcome row
    per pending function."""
    bands, rows = band_choice(cfg)
    fresh = functions.select("function_id", "stars", "signature", "shingles", F.lit(True).alias("is_new"))
    known = representatives.join(functions.select("function_id"), on="function_id", how="left_anti")
    nodes = fresh.unionByName(
        known.select("function_id", F.lit(None).cast("long").alias("stars"), "signature", "shingles",
                     F.lit(False).alias("is_new"))
    )
    # Read several times (bands, confirmation, representatives): computed once.
    nodes = nodes.localCheckpoint()
    graph = near_duplicate_components(nodes, cfg, id_col=KEY)
    labels = graph.components

    members = (
        nodes.select("function_id", "stars", "is_new")
        .join(labels, on="function_id", how="left")
        .where(F.col("is_new") | F.col("component").isNotNull())  # representatives off the graph: untouched
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
    kept_size = known.select(F.col("function_id").alias("kept_rep"), F.col("cluster_size").alias("kept_size"))
    components = (
        members.groupBy("component")
        .agg(
            F.min(F.when(~F.col("is_new"), F.col("function_id"))).alias("kept_rep"),
            F.sum(F.col("is_new").cast("long")).alias("new_members"),
        )
        .join(new_rep, on="component", how="left")
        .join(kept_size, on="kept_rep", how="left")
        .select(
            "component",
            F.coalesce(F.col("kept_rep"), F.col("new_rep")).alias("cluster_id"),
            (F.coalesce(F.col("kept_size"), F.lit(0)) + F.col("new_members")).alias("cluster_size"),
        )
    )
    assigned = members.where(F.col("is_new")).join(components, on="component", how="inner")
    duplicates = similarity(
        assigned.where(F.col("function_id") != F.col("cluster_id")).select("function_id", "cluster_id"),
        "function_id", "cluster_id", nodes, cfg, id_col=KEY,
    ).select("function_id", F.col("jaccard").alias("rep_jaccard"),
             F.col("measure").alias("rep_measure")).join(
        _best_link(graph.edges), on="function_id", how="left"
    )
    is_rep = F.col("function_id") == F.col("cluster_id")
    return assigned.join(duplicates, on="function_id", how="left").select(
        "function_id",
        "cluster_id",
        F.col("cluster_size").cast("long").alias("cluster_size"),
        is_rep.alias("is_representative"),
        F.col("function_id").alias(SOURCE_KEY),
        F.col("function_id").alias(ITEM_ID),
        F.when(is_rep, F.lit(None).cast("string")).otherwise(F.lit(Reason.NEAR_DUPLICATE.value)).alias(REJECT_REASON),
        F.when(is_rep, F.lit(None).cast("string")).otherwise(_detail(bands, rows)).alias(REJECT_DETAIL),
    )




def transform(functions: DataFrame, settings: DedupSettings) -> DataFrame:
    """Pending functions (FUNCTIONS columns) -> one `clusters` outcome row each."""
    with_signatures = functions.select(KEY, "stars").join(settings.signatures, on=KEY, how="inner")
    return _cluster(with_signatures, settings.known, settings.params)


# --- the stage --------------------------------------------------------------------------

def read(ctx: Context) -> DataFrame:
    """Type-checked functions (FUNCTIONS columns)."""
    return functions_through(ctx, TYPECHECKED)


def _check_stored_width(ctx: Context) -> None:
    other = ctx.lake.read(MINHASHES).where(F.col("num_perm") != F.lit(ctx.cfg.dedup.num_perm))
    found = other.select("num_perm").take(1)
    if found:
        raise StageError(
            f"dedup: minhashes holds signatures with num_perm={found[0]['num_perm']} but "
            f"lsh.num_perm={ctx.cfg.dedup.num_perm}; keep the old value or start the "
            "minhashes and clusters tables afresh"
        )


def refresh_cluster_sizes(ctx: Context) -> int:
    """Set every clusters row's size to its cluster's current member count (new members
    joined existing clusters); returns the rows changed."""
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


def settings(run: StageRun[DedupSettings]) -> DedupSettings:
    ctx = run.ctx
    params = LSHParams.from_config(ctx.cfg.dedup)
    _check_stored_width(ctx)
    bands, rows = band_choice(params)
    confirm = {"exact": f"confirmed on the exact Jaccard >= {params.threshold:.2f}",
               "estimate": f"confirmed on the estimated Jaccard >= {params.threshold:.2f}",
               "none": "all kept (verify: none)"}[params.verify]
    log.info("[dedup] LSH %d bands x %d rows tuned for %.2f over %d permutations (fp/fn weights "
             "%.2f/%.2f), %s tokens, candidates %s; buckets over %d members link to their smallest id",
             bands, rows, params.candidate_threshold or params.threshold, params.num_perm,
             params.fp_weight, params.fn_weight, params.tokenizer, confirm, FULL_PAIRS_MAX_BUCKET)
    todo = run.pending
    # Rows of earlier runs only: a run that crashed after writing clusters redoes its own rows.
    earlier = ctx.lake.read(CLUSTERS).join(todo.select(KEY), on=KEY, how="left_anti")
    representative_ids = earlier.where(F.col("is_representative")).select(KEY)
    stored = ctx.lake.read(MINHASHES).select(KEY, "signature", "shingles")
    representative_code = ctx.lake.read(FUNCTIONS).join(representative_ids, on=KEY, how="inner")
    to_hash = (todo.select(KEY, "code").unionByName(representative_code.select(KEY, "code"))
               .join(stored.select(KEY), on=KEY, how="left_anti"))
    sizes = earlier.groupBy(F.col("cluster_id").alias(KEY)).agg(F.count(F.lit(1)).alias("cluster_size"))
    known = representative_ids.join(sizes, on=KEY, how="inner").join(stored, on=KEY, how="inner")
    return DedupSettings(params, stored, known, to_hash)


def store_signatures(run: StageRun[DedupSettings]) -> None:
    """Signatures of the pending functions, and of any representative lacking one."""
    ctx, settings = run.ctx, run.settings
    hashed = from_nodes(signatures(
        settings.to_hash.select(F.col(KEY).alias("id"), F.col("code").alias("text")), settings.params,
    )).localCheckpoint()
    if not hashed.isEmpty():  # a re-run hashes nothing and commits nothing
        ctx.lake.insert_new(MINHASHES, hashed.withColumn("run_id", F.lit(ctx.run_id)))


def refresh_sizes(run: StageRun[DedupSettings]) -> None:
    refreshed = refresh_cluster_sizes(run.ctx)
    if refreshed:
        log.info("[dedup] refreshed cluster_size of %d existing rows", refreshed)


STAGE = Stage(
    name=NAME, output=CLUSTERS, key=KEY, read=read, settings=settings, transform=transform,
    chunking=WHOLE_INPUT,  # a global operation: one chunk, whatever run.chunk_rows says
    verdicts=True, before=(store_signatures,), after=(refresh_sizes,), retries=False,
)
