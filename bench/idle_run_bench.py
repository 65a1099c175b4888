"""A nightly run over an unchanged input: how long the seed stages take once the JVM is up.

Builds a lake from the 2,000-file sample (`selfalign run --until dedup`), then runs the
same command again, each time in a fresh process as a nightly job would:

baseline  with the idle record removed: every stage checks with Spark that nothing is
          pending (the first Delta read in a fresh JVM pays its class loading);
record    as shipped: the record a run that changed nothing left says the input, the
          tables and the config are unchanged, and the stages are skipped without a
          Spark job.

Printed per stage: seconds from the run line (the JVM is up) to the stage's line, and
the ratio record / baseline. Target: each idle stage <= 3 s, all seed stages <= 30 s.

    .venv/bin/python bench/idle_run_bench.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED_STAGES = ("extract", "decontaminate", "typecheck", "dedup")
STAGE_LINE = re.compile(r"\[(\w+)\] nothing pending")


def selfalign(lake: Path, *, stream: bool = False) -> dict[str, float]:
    """One `selfalign run --until dedup`; with stream, when each stage's idle line came
    (seconds after the run line)."""
    command = [str(REPO / ".venv" / "bin" / "selfalign"), "run", "--until", "dedup", "--no-status",
               "--set", f"lake.root={lake}", "--set", f"spark.ivy_dir={REPO / '.ivy'}"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True,
                               stdout=subprocess.DEVNULL, env=os.environ.copy())
    assert process.stderr is not None
    started: float | None = None
    seen: dict[str, float] = {}
    for line in process.stderr:
        now = time.monotonic()
        if " INFO run " in line:
            started = now
        match = STAGE_LINE.search(line)
        if match and started is not None:
            seen[match.group(1)] = now - started
    if process.wait() != 0:
        sys.exit(f"selfalign run failed (exit {process.returncode})")
    if stream and set(seen) != set(SEED_STAGES):
        sys.exit(f"expected every seed stage idle, saw {sorted(seen)}")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if "SELFALIGN_BENCHMARKS_DIR" not in os.environ and (REPO.parent / "shared" / "benchmarks").is_dir():
        os.environ["SELFALIGN_BENCHMARKS_DIR"] = str(REPO.parent / "shared" / "benchmarks")
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        clock = time.monotonic()
        selfalign(lake)
        print(f"built the lake from the sample in {time.monotonic() - clock:.0f} s")
        selfalign(lake)  # finds nothing pending, changes nothing: leaves the record
        record = lake / "_staging" / "idle-stages.json"
        results: dict[str, list[dict[str, float]]] = {"baseline": [], "record": []}
        for _ in range(args.repeats):
            saved = record.read_text()
            record.unlink()
            results["baseline"].append(selfalign(lake, stream=True))
            record.write_text(saved)  # the baseline run committed nothing: still valid
            results["record"].append(selfalign(lake, stream=True))
    print(f"\nseconds after the run line (the JVM is up), the fastest of {args.repeats} runs each")
    print(f"{'stage':<14}{'baseline':>10}{'record':>10}{'ratio':>8}")
    best = {kind: min(runs, key=lambda run: run[SEED_STAGES[-1]]) for kind, runs in results.items()}
    previous = {kind: 0.0 for kind in best}
    for stage in (*SEED_STAGES, "seed stages"):
        if stage == "seed stages":
            spent = {kind: best[kind][SEED_STAGES[-1]] for kind in best}
        else:
            spent = {kind: best[kind][stage] - previous[kind] for kind in best}
            previous = {kind: best[kind][stage] for kind in best}
        print(f"{stage:<14}{spent['baseline']:>10.2f}{spent['record']:>10.2f}"
              f"{spent['record'] / max(spent['baseline'], 1e-9):>8.2f}")

if __name__ == "__main__":
    main()
