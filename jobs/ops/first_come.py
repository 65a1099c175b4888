"""The published global cleaning of SFT pairs on Spark: a first-come walk over their keys.

udfs/diversify.py has the rule. The walk is sequential by nature (whether a pair is
kept depends on every pair before it), so it runs as one task over the night's pairs,
sorted by a seeded shuffle, holding only the keys this night keeps. Earlier nights'
keys (`sft.dedup_keys`, 3 per pair) are removed first by a join, so the cost is
O(new pairs + stored keys) and no earlier response is read again.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from udfs.diversify import KINDS, first_come

KEY = "instruction_id"
# What the walk says of each pair: kept, or the kind of key taken and by which instruction.
CLAIMS = f"response_id string, {KEY} string, kept boolean, kind string, kept_id string"
_BATCH = 50_000


def shuffle_order(seed: int) -> Column:
    """The published shuffle (random.seed(0), then random.shuffle over the file) as a
    sort key: a hash of run.seed and the response id, fixed across runs and lakes."""
    return F.sha2(F.concat_ws(":", F.lit(str(seed)), F.col("response_id")), 256)


def _walk(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    pairs = ((rid, owner, list(keys)) for batch in batches
             for rid, owner, keys in zip(batch["response_id"], batch[KEY], batch["_keys"], strict=True))
    claims = first_come(pairs)
    while chunk := list(islice(claims, _BATCH)):
        yield pd.DataFrame({
            "response_id": [c.item for c in chunk],
            KEY: [c.owner for c in chunk],
            "kept": [c.kept for c in chunk],
            "kind": [c.kind for c in chunk],
            "kept_id": [c.by for c in chunk],
        })


def earlier_claims(pairs: DataFrame, stored: DataFrame) -> DataFrame:
    """CLAIMS rows for new pairs holding a key an earlier night's pair holds.

    `pairs`: response_id, instruction_id, _keys; `stored`: instruction_id, dedup_keys.
    Of a pair's keys taken, the first in the published check order names the reason."""
    taken = (
        pairs.select("response_id", KEY, F.posexplode("_keys").alias("_kind", "_key"))
        .join(stored.select(F.col(KEY).alias("kept_id"), F.explode("dedup_keys").alias("_key")),
              on="_key", how="inner")
        .groupBy("response_id", KEY)
        .agg(F.min(F.struct("_kind", "kept_id")).alias("_first"))
    )
    kinds = F.element_at(F.array(*[F.lit(kind) for kind in KINDS]), F.col("_first._kind") + 1)
    return taken.select("response_id", KEY, F.lit(False).alias("kept"), kinds.alias("kind"),
                        F.col("_first.kept_id").alias("kept_id"))


def walk(pairs: DataFrame, stored: DataFrame, seed: int) -> DataFrame:
    """CLAIMS for every pair (response_id, instruction_id, _keys): the earlier nights'
    keys first, then the first-come walk over the rest in shuffle order."""
    before = earlier_claims(pairs, stored).localCheckpoint()
    free = pairs.join(before.select("response_id"), on="response_id", how="left_anti")
    walked = (
        free.select("response_id", KEY, "_keys", shuffle_order(seed).alias("_order"))
        .repartition(1)
        .sortWithinPartitions("_order", "response_id")
        .select("response_id", KEY, "_keys")
        .mapInPandas(_walk, schema=CLAIMS)
    )
    return before.unionByName(walked.select(*before.columns))
