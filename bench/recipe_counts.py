"""What `--profile published` makes of the sample corpus, beside the defaults, in one run.

The whole DAG (extract through export) runs twice on the same files of the built-in
sample (data/stack_sample), into two fresh lakes: once as configured by default, once
with `--profile published`. The model is the test double served by a real
OpenAI-compatible HTTP server (as tests/e2e/test_dag.py runs it), with changes so the
cleaning has something to decide: each task and response is about the seed's own
function name (from the concepts the double wrote), tasks are worded by a draw from that
name (so two seeds' tasks are not near duplicates), and each of an instruction's samples
words its code differently, as sampled answers do. It judges every seed Yes.

Printed per lake: the rows of each stage's table and select's rejects by reason.

    .venv/bin/python bench/recipe_counts.py [--files 200] [--respond-n 4]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pyarrow.parquet as pq  # noqa: E402

from tests.llm_server import LLMServer  # noqa: E402
from tests.stage_engine import stage_responder  # noqa: E402
from udfs.llm import SamplingParams  # noqa: E402

MODEL = "local-base"
# Three ways to write the same code: an instruction's samples differ as sampled text does.
BODIES = ("return x * 2", "return x + x", "return 2 * x", "doubled = x * 2\n    return doubled")


def seed_name(prompt: str) -> str:
    """The seed's function name: the third concept the double wrote (or the `name(x)` an
    instruction names)."""
    concepts = re.findall(r"concepts: ([^)\n]*)", prompt)
    names = [c.strip() for c in (concepts[-1].split(",") if concepts else [])]
    if len(names) > 2 and names[2].isidentifier():
        return names[2]
    named = re.findall(r"function `(\w+)\(x\)`", prompt)
    return named[-1] if named else "double"


def response(name: str, body: str) -> str:
    return (f"Double the input.\n\n## Implementation\n```python\ndef {name}(x):\n    {body}\n```\n\n"
            f"## Explanation\nTwice the number.\n\n## Tests\n```python\nassert {name}(2) == 4\n"
            f"assert {name}(-3) == -6\n```\n")


CLAUSES = ("returns twice its argument", "accepts integers and floats", "rejects strings with a TypeError",
           "keeps the sign of negative input", "documents its edge cases", "runs in constant time",
           "is safe to call from several threads", "never mutates its input", "handles zero",
           "works on very large integers", "returns the same type it was given", "has a one-line docstring")


def instruction(prompt: str) -> str:
    """A task naming the seed's function, worded by a draw from its name, so tasks of
    different seeds are not near duplicates of each other (as sampled ones are not)."""
    name = seed_name(prompt.rsplit("===", 1)[-1].replace("Concepts:", "concepts:") + ")")
    picked = random.Random(name).sample(CLAUSES, 4)
    return f"Write a function `{name}(x)` that {', '.join(picked[:3])} and {picked[3]}."


def answer(prompt: str, params: dict[str, Any]) -> list[str]:
    n = int(params.get("n", 1))
    if prompt.endswith("Task:\n"):
        return [instruction(prompt)] * n
    if prompt.rstrip().endswith("## Reasoning"):
        name = seed_name(prompt.rsplit("=== Response ===", 1)[0].rsplit("===", 1)[-1])
        return [response(name, BODIES[k % len(BODIES)]) for k in range(n)]
    answered = stage_responder(prompt, SamplingParams(n=n, temperature=float(params.get("temperature", 0))))
    if answered == "unrecognised prompt":  # a judge template of another layout: Yes
        answered = " Yes"
    return [answered] * n if isinstance(answered, str) else list(answered)


def counts(lake: Path) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None
    tables = ("functions", "quality", "clusters", "instructions", "responses", "executions", "sft")
    found: dict[str, Any] = {t: spark.read.format("delta").load(str(lake / t)).count()
                             for t in tables if (lake / t).exists()}
    rejects = spark.read.format("delta").load(str(lake / "rejects")).groupBy("stage", "reason").count()
    found["rejects"] = {f"{r['stage']}:{r['reason']}": r["count"] for r in rejects.orderBy("stage", "reason").collect()}
    return found


def main() -> None:
    from jobs.cli import main as cli_main

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="rows of the sample to use")
    parser.add_argument("--respond-n", type=int, default=4, help="responses per instruction (published: 10)")
    options = parser.parse_args()
    sample = REPO / "data" / "stack_sample"
    with tempfile.TemporaryDirectory() as tmp_dir, LLMServer(answer, models=(MODEL,)) as server:
        tmp = Path(tmp_dir)
        table = pq.read_table(next(iter(sorted(sample.glob("*.parquet")))))
        pq.write_table(table.slice(0, options.files), tmp / "input.parquet")
        results = {}
        for name, profile in (("default", []), ("published", ["--profile", "published"])):
            settings = [f"lake.root={tmp / name / 'lake'}", f"input.path={tmp / 'input.parquet'}",
                        f"export.out={tmp / name / 'export'}", "llm.engine=openai",
                        f"llm.base_url={server.base_url}", f"llm.model={MODEL}",
                        f"generation.respond.n={options.respond_n}"]
            args = ["run", "--no-status", *profile, *[a for s in settings for a in ("--set", s)]]
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                cli_main(args)
            results[name] = counts(tmp / name / "lake")
    print(f"sample: {options.files} files, {options.respond_n} responses per instruction, test double model")
    for name, found in results.items():
        print(f"{name:>10}: {found}")


if __name__ == "__main__":
    main()
