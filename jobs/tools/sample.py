"""`selfalign sample`: build the sample corpus parquet from this machine's Python files.

No Spark: the corpus is the pipeline's input, built once and committed. The
logic lives in udfs/corpus.py; this module only wires the config to it.

    selfalign sample --config conf/local.yaml [--set sample.files=500]
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from jobs.core.config import PipelineConfig
from udfs.corpus import SampleStats, build_sample

log = logging.getLogger("selfalign")


def run_sample(cfg: PipelineConfig) -> SampleStats:
    out = Path(cfg.sample.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stats = build_sample(out, cfg.sample.files, cfg.sample.seed, cfg.sample.max_file_bytes)
    log.info("sample: %d files, %d bytes, %d repos -> %s in %.1fs",
             stats.files, stats.bytes, stats.repos, out, time.monotonic() - started)
    return stats
