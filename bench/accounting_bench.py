"""What accounting costs a generation stage: the respond stage with and without it.

Accounting (udfs/accounting.py) meters every engine call in the tasks (MeteredEngine)
and sums five more outcome columns in the chunk's existing `observe`. The baseline runs
the same stage beside it, in the same Spark session, with both taken out: the engine
unwrapped and the outcome rows without usage columns. Runs alternate, fresh prompts
each time, against a local OpenAI-compatible server with a fixed latency per request.
It prints the median seconds of each, their ratio, and the Spark jobs each run started
(counted by job group), which must be equal: accounting adds no job.

    .venv/bin/python bench/accounting_bench.py --n 400 --latency-ms 20 --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.generation_bench import instructions, plant_instructions, start_server  # noqa: E402


class Unmetered:
    """The baseline's engine wrapper: passes calls through and counts nothing."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def generate(self, prompts: Any, params: Any) -> Any:
        return self.engine.generate(prompts, params)

    def check(self) -> None:
        self.engine.check()

    def describe(self) -> dict[str, Any]:
        return self.engine.describe()

    def take(self) -> Any:
        from udfs.accounting import Usage

        return Usage()


def unaccounted_respond() -> Any:
    """The respond stage as it was before accounting: no metering, no usage columns."""
    import jobs.stages.generation as generation
    from jobs.stages import respond

    saved = generation.MeteredEngine, generation.outcome_schema
    generation.MeteredEngine = Unmetered  # type: ignore[assignment,misc]
    generation.outcome_schema = lambda output, usage=False: saved[1](output)  # type: ignore[assignment]
    try:
        return generation.llm_stage(respond.NAME, respond.RESPONSES, respond.KEY, respond.read,
                                    respond.response_rows, verdicts=True)
    finally:
        generation.MeteredEngine, generation.outcome_schema = saved


def timed_run(ctx: Any, stage: Any, rows: list[tuple[str, str]], group: str) -> tuple[float, int]:
    """Seconds of one stage run over freshly planted rows, and the Spark jobs it started."""
    from jobs.core.runner import run

    plant_instructions(ctx, rows)
    spark_context = ctx.spark.sparkContext
    spark_context.setJobGroup(group, group)
    start = time.perf_counter()
    summary = run(stage, ctx)
    elapsed = time.perf_counter() - start
    spark_context.setJobGroup("", "")
    assert summary.rows_in == len(rows) and summary.rows_failed == 0, summary
    return elapsed, len(spark_context.statusTracker().getJobIdsForGroup(group))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    from jobs.core.config import load_config
    from jobs.core.context import Context
    from jobs.stages import respond
    from schemas import RUNS

    proc, base_url = start_server(args.latency_ms / 1000)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = Context.create(load_config(None, [
                f"lake.root={Path(tmp) / 'lake'}", "llm.engine=openai", f"llm.base_url={base_url}",
                "llm.model=", "generation.respond.n=1"]))
            stages = {"with accounting": respond.STAGE, "without (baseline)": unaccounted_respond()}
            for name, stage in stages.items():  # warm-up: JVM, workers, the client
                timed_run(ctx, stage, instructions(4, prefix=f"warm {name} "), f"warm-{len(name)}")
            seconds: dict[str, list[float]] = {name: [] for name in stages}
            jobs: dict[str, set[int]] = {name: set() for name in stages}
            for rep in range(args.reps):
                for index, (name, stage) in enumerate(stages.items()):
                    rows = instructions(args.n, prefix=f"rep {rep} stage {index} ")
                    elapsed, started = timed_run(ctx, stage, rows, f"rep{rep}-{index}")
                    seconds[name].append(elapsed)
                    jobs[name].add(started)
            accounted = ctx.lake.read(RUNS).where("stage = 'respond'").agg({"tokens_out": "max"}).first()[0]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    print(f"respond stage, {args.n} prompts per run, server latency {args.latency_ms:.0f} ms, "
          f"{args.reps} runs each, alternating")
    for name in stages:
        print(f"  {name:<20}: median {statistics.median(seconds[name]):6.2f}s  "
              f"runs {', '.join(f'{s:.2f}' for s in seconds[name])}  Spark jobs per run {sorted(jobs[name])}")
    ratio = statistics.median(seconds["with accounting"]) / statistics.median(seconds["without (baseline)"])
    print(f"  ratio with/without  : {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    print(f"  tokens out recorded by the largest accounted run: {accounted}")


if __name__ == "__main__":
    main()
