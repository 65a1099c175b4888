"""Connected components of an undirected graph given as (lo, hi) edges, over DataFrames:
the alternating large-star/small-star algorithm."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger("selfalign")


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
    """Undirected (lo, hi) edges -> ((id, component), iterations), component being
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
        log.warning("connected components did not converge in %d iterations (max_iterations); "
                    "some clusters may stay split", max_iterations)
    # At convergence each node has one parent, its root; before it, the smallest
    # parent is still an id of the same component, so the result is never wrong, only split.
    labels = current.select(F.col("hi").alias("id"), F.col("lo").alias("component")).unionByName(
        current.select(F.col("lo").alias("id"), F.col("lo").alias("component"))
    ).groupBy("id").agg(F.min("component").alias("component"))
    return labels, iterations
