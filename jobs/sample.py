"""`selfalign sample`: build the sample corpus parquet from this machine's Python files.

No Spark: the corpus is the pipeline's input, built once and committed. The
logic lives in udfs/corpus.py; this module only wires the config to it.

    python jobs/sample.py --config conf/local.yaml [--set sample.files=500]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jobs.config import ConfigError, PipelineConfig, load_config
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobs/sample.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", default=None,
                        help="YAML config (default: the packaged conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key, e.g. sample.files=500")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        stats = run_sample(load_config(args.config, args.overrides))
    except ConfigError as exc:
        # Operators read a one-line reason, not a traceback (same as the selfalign CLI).
        print(f"selfalign: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"sample: {stats}")


if __name__ == "__main__":
    main()
