"""Where tests find what the repository does not hold."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# MBPP, HumanEval+ and MBPP+ are read in place, never committed: ../shared/benchmarks
# beside the clone (CI), or wherever SELFALIGN_BENCHMARKS_DIR points.
BENCHMARKS = Path(os.environ.get("SELFALIGN_BENCHMARKS_DIR") or REPO.parent / "shared" / "benchmarks")
