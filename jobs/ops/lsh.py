"""MinHash-LSH over DataFrames with neutral column names, used by dedup (functions) and
select (instructions): signatures, band keys, candidate pairs, confirmed edges.

Columns: `id` (string), `text`, `signature` (bytes, see udfs.minhash), `shingles` (the
sorted distinct shingle hashes, bytes; null where not kept), `is_new` (a node of this
run: candidate pairs need one on one side, so earlier rows are never compared again),
`band`, `key`; pairs and edges are (lo, hi) with lo < hi.

Candidates come from bands tuned for a threshold below the real one
(`candidate_threshold`), then each is confirmed on the exact Jaccard of the two shingle
sets: the estimate from 256 slots has a standard deviation of ~0.03 at 0.5, so
confirming on it splits about half the pairs just above the threshold. `verify: none`
confirms nothing (text-dedup's way: every band collision is a duplicate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
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

from jobs.core.pandas_udf import series_udf
from udfs.minhash import (
    EMPTY_SLOT,
    Tokenizer,
    band_hash_matrix,
    cached_hasher,
    exact_jaccard,
    hashes_to_bytes,
    jaccard_rows,
    optimal_bands,
    shingles,
    signatures_from_bytes,
    signatures_to_bytes,
)

# Buckets up to this size yield all their pairs; a larger bucket (boilerplate such as
# trivial getters sharing a band) links each member to the bucket's smallest id only,
# so a bucket of n costs n - 1 candidates instead of n^2 / 2. A member of a big bucket
# still meets its real near-duplicates through its ~50 other bands.
FULL_PAIRS_MAX_BUCKET = 50

SIGNATURE_SCHEMA = StructType(
    [
        StructField("id", StringType(), False),
        StructField("signature", BinaryType(), False),
        StructField("num_perm", IntegerType(), False),
        StructField("shingles", BinaryType(), True),
    ]
)
BAND_SCHEMA = StructType(
    [
        StructField("id", StringType(), False),
        StructField("is_new", BooleanType(), False),
        StructField("band", IntegerType(), False),
        StructField("key", LongType(), False),
    ]
)


@dataclass(frozen=True)
class LSHParams:
    """What the LSH functions need. Band/row choice leans to recall: every candidate is
    confirmed anyway, so a false positive costs one comparison while a false negative is
    a duplicate kept (0.2/0.8 at 0.4/256: 64x4). `verify`: "exact" confirms on the shingle
    sets, "estimate" on the signatures, "none" keeps every candidate (text-dedup's, which
    the published seed dedup used). `tokenizer`: see udfs.minhash.shingles."""

    threshold: float
    num_perm: int
    shingle_size: int
    seed: int
    max_iterations: int  # of connected components
    fp_weight: float = 0.2
    fn_weight: float = 0.8
    candidate_threshold: float | None = None  # the bands' threshold; None: `threshold`
    verify: str = "exact"
    tokenizer: Tokenizer = "words"

    @classmethod
    def from_config(cls, section: Any, threshold: str = "threshold") -> LSHParams:
        """From a config section (dedup, or select whose threshold is named differently)."""
        return _from_config(section, threshold)


def _from_config(section: Any, threshold: str = "threshold") -> LSHParams:
    optional = {name: getattr(section, name) for name in ("fp_weight", "fn_weight", "verify", "tokenizer")
                if hasattr(section, name)}
    if hasattr(section, "bands_threshold"):
        optional["candidate_threshold"] = section.bands_threshold()
    return LSHParams(getattr(section, threshold), section.num_perm,
                     section.shingle_size, section.seed,
                     section.max_iterations, **optional)


def band_choice(cfg: LSHParams) -> tuple[int, int]:
    """(bands, rows) minimising the weighted LSH error at the candidate threshold."""
    threshold = cfg.threshold if cfg.candidate_threshold is None else cfg.candidate_threshold
    return optimal_bands(threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight)


def signature_batches(batches: Iterator[pd.DataFrame], cfg: LSHParams) -> Iterator[pd.DataFrame]:
    hasher = cached_hasher(cfg.num_perm, cfg.seed)
    for batch in batches:
        sets = [shingles(text or "", cfg.shingle_size, cfg.tokenizer) for text in batch["text"]]
        sigs, hashes = hasher.signatures_and_hashes(sets)
        yield pd.DataFrame({
            "id": batch["id"],
            "signature": signatures_to_bytes(sigs),
            "num_perm": np.full(len(batch), cfg.num_perm, dtype=np.int32),
            "shingles": hashes_to_bytes(hashes) if cfg.verify == "exact" else [None] * len(batch),
        })


def signatures(items: DataFrame, cfg: LSHParams) -> DataFrame:
    """(id, text) -> (id, signature, num_perm, shingles)."""
    return items.select("id", "text").mapInPandas(
        lambda it: signature_batches(it, cfg), schema=SIGNATURE_SCHEMA
    )


def band_key_batches(batches: Iterator[pd.DataFrame], num_perm: int, bands: int,
                     rows: int, skip_empty: bool = False) -> Iterator[pd.DataFrame]:
    """Band keys per row; `skip_empty`: rows whose signature is the empty set's (no
    shingles) get none, so they meet no other row."""
    for batch in batches:
        sigs = signatures_from_bytes(batch["signature"].tolist(), num_perm)
        ids, new = batch["id"].to_numpy(), batch["is_new"].to_numpy(dtype=bool)
        if skip_empty:
            has_shingles = (sigs != EMPTY_SLOT).any(axis=1)
            ids, new, sigs = ids[has_shingles], new[has_shingles], sigs[has_shingles]
        keys = band_hash_matrix(sigs, bands, rows)
        yield pd.DataFrame({
            "id": np.repeat(ids, bands),
            "is_new": np.repeat(new, bands),
            "band": np.tile(np.arange(bands, dtype=np.int32), len(ids)),
            "key": keys.reshape(-1),
        })


def band_keys(nodes: DataFrame, cfg: LSHParams) -> DataFrame:
    """(id, is_new, signature) -> one (id, is_new, band, key) row per band. Under the
    nonalpha_split tokenizer a text of fewer than 5 tokens (udfs.minhash) has no
    shingles and no band keys: it takes no part, as in text-dedup (whose later versions
    drop such texts; at the commit the seeds used they all shared one signature)."""
    bands, rows = band_choice(cfg)
    skip_empty = cfg.tokenizer == "nonalpha_split"
    return nodes.select("id", "is_new", "signature").mapInPandas(
        lambda it: band_key_batches(it, cfg.num_perm, bands, rows, skip_empty), schema=BAND_SCHEMA
    )


def candidate_pairs(keys: DataFrame, max_full_bucket: int = FULL_PAIRS_MAX_BUCKET) -> DataFrame:
    """(lo, hi) id pairs, lo < hi, sharing a band key, at least one of them new."""
    buckets = (
        keys.groupBy("band", "key")
        .agg(
            F.count(F.lit(1)).alias("size"),
            F.min(F.struct("id", "is_new")).alias("anchor"),
            F.max(F.col("is_new").cast("int")).alias("any_new"),
        )
        .where((F.col("size") >= 2) & (F.col("any_new") == 1))
    )
    members = keys.join(buckets, on=["band", "key"], how="inner")

    small = members.where(F.col("size") <= max_full_bucket)
    left = small.select("band", "key", F.col("id").alias("lo"), F.col("is_new").alias("lo_new"))
    right = small.select("band", "key", F.col("id").alias("hi"), F.col("is_new").alias("hi_new"))
    all_pairs = (
        left.join(right, on=["band", "key"], how="inner")
        .where((F.col("lo") < F.col("hi")) & (F.col("lo_new") | F.col("hi_new")))
        .select("lo", "hi")
    )

    new_side = F.col("is_new") | F.col("anchor.is_new")
    star = members.where(
        (F.col("size") > max_full_bucket) & (F.col("id") != F.col("anchor.id")) & new_side
    ).select(F.col("anchor.id").alias("lo"), F.col("id").alias("hi"))
    return all_pairs.unionByName(star).distinct()


def pair_jaccard(num_perm: int) -> Callable[..., Column]:
    """(signature, signature, shingles, shingles) -> the exact Jaccard where both shingle
    sets are known, else the signatures' estimate (rows stored before shingles were)."""

    def jaccard(sig_l: pd.Series, sig_r: pd.Series, sh_l: pd.Series, sh_r: pd.Series) -> pd.Series:
        values = np.empty(len(sig_l), dtype=np.float64)
        estimated = []  # rows whose shingle sets are not both known: the signatures decide
        for row, (left, right) in enumerate(zip(sh_l.tolist(), sh_r.tolist(), strict=True)):
            if left is not None and right is not None:
                values[row] = exact_jaccard(left, right)
            else:
                estimated.append(row)
        if estimated:
            values[estimated] = jaccard_rows(
                signatures_from_bytes(sig_l.iloc[estimated].tolist(), num_perm),
                signatures_from_bytes(sig_r.iloc[estimated].tolist(), num_perm))
        return pd.Series(values)

    return series_udf(jaccard, DoubleType())


def _with_shingles(sigs: DataFrame) -> DataFrame:
    if "shingles" in sigs.columns:
        return sigs.select("id", "signature", "shingles")
    return sigs.select("id", "signature", F.lit(None).cast(BinaryType()).alias("shingles"))


def with_jaccard(pairs: DataFrame, left: str, right: str, sigs: DataFrame, num_perm: int) -> DataFrame:
    """`pairs` plus `jaccard` of columns left and right, and `exact` (False: estimated
    from the signatures). `sigs`: id, signature and, where known, shingles."""
    jaccard = pair_jaccard(num_perm)
    sigs = _with_shingles(sigs)
    return (
        pairs.join(sigs.select(F.col("id").alias(left), F.col("signature").alias("_sig_l"),
                               F.col("shingles").alias("_sh_l")), on=left, how="inner")
        .join(sigs.select(F.col("id").alias(right), F.col("signature").alias("_sig_r"),
                          F.col("shingles").alias("_sh_r")), on=right, how="inner")
        .withColumn("jaccard", jaccard(F.col("_sig_l"), F.col("_sig_r"), F.col("_sh_l"), F.col("_sh_r")))
        .withColumn("exact", F.col("_sh_l").isNotNull() & F.col("_sh_r").isNotNull())
        .drop("_sig_l", "_sig_r", "_sh_l", "_sh_r")
    )


def jaccard_label() -> Column:
    """How a reject detail names the `jaccard` of a `with_jaccard` row."""
    return F.when(F.col("exact"), F.lit("Jaccard")).otherwise(F.lit("estimated Jaccard"))


def verifying(sigs: DataFrame, cfg: LSHParams) -> DataFrame:
    """`sigs` as `with_jaccard` should see them under cfg.verify: "estimate" and "none"
    hide the shingle sets (none stores none)."""
    return sigs.drop("shingles") if cfg.verify != "exact" else sigs


def confirmed_edges(pairs: DataFrame, sigs: DataFrame, cfg: LSHParams) -> DataFrame:
    """Candidate (lo, hi) pairs whose Jaccard reaches the threshold, with it; under
    verify "none" every candidate, with its estimated Jaccard for the record."""
    scored = with_jaccard(pairs, "lo", "hi", verifying(sigs, cfg), cfg.num_perm)
    if cfg.verify == "none":
        return scored.select("lo", "hi", "jaccard")
    return scored.where(F.col("jaccard") >= F.lit(cfg.threshold)).select("lo", "hi", "jaccard")
