"""Dedup quality against the exact Jaccard of every pair, and what it costs.

Input: the first N distinct documented functions of this machine's stdlib and
site-packages (real code, no planted copies). Truth: the exact Jaccard of the word
5-gram sets of every pair (a sparse product, so all N^2/2 pairs are counted). Then the
dedup stage's own Spark operations (signatures, band keys, candidate pairs, confirmed
edges, components) run under each configuration:

- `before`: bands tuned for the threshold (51x5) and edges confirmed on the signatures'
  estimate, what the stage did before issue 15;
- `published`: datasketch's own band choice at 0.5 (equal weights: 42x6), confirmed on
  the estimate;
- `default`: bands tuned for 0.8 x threshold (64x4), edges confirmed on the exact
  Jaccard of the stored shingle hashes.

Printed per configuration: candidates, edge precision and recall over all pairs with
J >= threshold and in the band [threshold, threshold + 0.1), component recall (a true
pair is in one cluster, perhaps through others), seconds of the Spark operations, and
seconds relative to `before` (same run, same warm JVM; each configuration runs twice
and the second time is kept).

    .venv/bin/python bench/dedup_recall_bench.py [--n 5000]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_functions import documented_functions

from udfs.minhash import shingles

Pair = tuple[str, str]


def exact_pairs(ids: list[str], codes: list[str], shingle_size: int) -> dict[Pair, float]:
    """Every pair sharing at least one shingle -> its exact Jaccard."""
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    sizes = []
    for row, code in enumerate(codes):
        items = shingles(code, shingle_size)
        sizes.append(len(items))
        for item in items:
            rows.append(row)
            cols.append(vocabulary.setdefault(item, len(vocabulary)))
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)),
                           shape=(len(codes), len(vocabulary)))
    common = sp.triu(matrix @ matrix.T, k=1).tocoo()
    size = np.array(sizes)
    jaccard = common.data / (size[common.row] + size[common.col] - common.data)
    return {(min(ids[i], ids[j]), max(ids[i], ids[j])): float(v)
            for i, j, v in zip(common.row.tolist(), common.col.tolist(), jaccard.tolist(), strict=True)}


def run_ops(spark, ids: list[str], codes: list[str], params) -> tuple[float, int, set[Pair], dict[str, str]]:
    from pyspark.sql import functions as F

    from jobs.ops.components import connected_components
    from jobs.ops.lsh import band_keys, candidate_pairs, confirmed_edges, signatures

    start = time.perf_counter()
    items = spark.createDataFrame(list(zip(ids, codes, strict=True)), "id string, text string")
    sigs = signatures(items, params).withColumn("is_new", F.lit(True)).localCheckpoint()
    candidates = candidate_pairs(band_keys(sigs, params)).localCheckpoint()
    edges = confirmed_edges(candidates, sigs, params).localCheckpoint()
    labels, _ = connected_components(edges.select("lo", "hi"), params.max_iterations)
    label_rows = labels.collect()
    edge_rows = edges.collect()
    seconds = time.perf_counter() - start
    return (seconds, candidates.count(), {(r["lo"], r["hi"]) for r in edge_rows},
            {r["id"]: r["component"] for r in label_rows})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from jobs.core.config import load_config
    from jobs.core.sections import DedupConfig
    from jobs.core.session import get_spark
    from jobs.ops.lsh import LSHParams, band_choice

    functions = documented_functions(args.n)
    ids = [fn.function_id for fn in functions]
    codes = [fn.code for fn in functions]
    cfg = DedupConfig()
    truth = exact_pairs(ids, codes, cfg.shingle_size)
    lo, hi = cfg.threshold, cfg.threshold + 0.1
    positives = {pair for pair, j in truth.items() if j >= lo}
    band = {pair for pair, j in truth.items() if lo <= j < hi}
    print(f"{len(functions)} real functions, {len(ids) * (len(ids) - 1) // 2} pairs, "
          f"{len(positives)} with exact J >= {lo}, {len(band)} in [{lo}, {hi:.1f})")

    default = LSHParams.from_config(cfg)
    configs = {
        "before": dataclasses.replace(default, candidate_threshold=None, verify="estimate"),
        "published": dataclasses.replace(default, candidate_threshold=None, verify="estimate",
                                         fp_weight=0.5, fn_weight=0.5),
        "default": default,
    }
    spark = get_spark(load_config(None).spark)
    results = {}
    for name, params in configs.items():
        run_ops(spark, ids, codes, params)  # warm: Python workers, code paths
        results[name] = run_ops(spark, ids, codes, params)

    print(f"cores: {os.cpu_count()}")
    base = results["before"][0]
    for name, (seconds, candidates, edges, labels) in results.items():
        bands, rows = band_choice(configs[name])
        hits = edges & positives
        precision = len(hits) / len(edges) if edges else 1.0
        together = sum(1 for a, b in positives if labels.get(a, a) == labels.get(b, b))
        print(f"{name:>9} {bands}x{rows} verify={configs[name].verify:<8} candidates {candidates:>6}  "
              f"edges: precision {precision:.4f} recall {len(hits) / len(positives):.4f} "
              f"recall in band {len(edges & band) / len(band):.4f}  "
              f"component recall {together / len(positives):.4f}  "
              f"{seconds:6.2f}s ({seconds / base:.2f}x before)")


if __name__ == "__main__":
    main()
