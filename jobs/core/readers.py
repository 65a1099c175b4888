"""What one stage reads of another's output, in one place, so no stage imports another.

Each gate is a verdict table's kept rows; the names are the funnel's (report):
  decontaminated   functions no benchmark leaks into           (decontamination)
  typechecked      ... that pyright accepts                    (typecheck)
  representatives  ... one per near-duplicate cluster          (clusters)
  seeds            ... whose docstring the judge accepted      (quality): Self-OSS-Instruct's seeds
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.core.context import Context
from schemas import CLUSTERS, DECONTAMINATION, FUNCTIONS, QUALITY, TYPECHECK, TableSpec
from udfs.llm import CUT_AT_MAX_TOKENS
from udfs.parse import ASSERTIONS

KEY = "function_id"


@dataclass(frozen=True)
class Gate:
    name: str
    table: TableSpec
    column: str  # boolean verdict column
    kept_when: bool = True  # the verdict value that keeps a row

    def kept(self) -> Column:
        return F.col(self.column) if self.kept_when else ~F.col(self.column)

    def kept_ids(self, ctx: Context) -> DataFrame:
        return ctx.lake.read(self.table).where(self.kept()).select(KEY)


DECONTAMINATED = Gate("decontaminated", DECONTAMINATION, "contaminated", kept_when=False)
TYPECHECKED = Gate("typechecked", TYPECHECK, "passed")
REPRESENTATIVES = Gate("representatives", CLUSTERS, "is_representative")
SEEDS = Gate("seeds", QUALITY, "good")


def functions_through(ctx: Context, gate: Gate) -> DataFrame:
    """`functions` rows (all columns) that passed `gate`. Each stage only sees what the
    stage before it kept, so the last gate implies the earlier ones."""
    return ctx.lake.read(FUNCTIONS).join(gate.kept_ids(ctx), on=KEY, how="inner")


def runnable(responses: DataFrame) -> DataFrame:
    """Responses with an implementation and tests that can fail: what the sandbox can judge.

    Read from `missing` (the parser names every part that is absent or blank, and tests
    that cannot fail), not from the code and tests themselves: counting what is pending
    (`selfalign plan`, `status`) then reads no generated text."""
    absent = F.arrays_overlap(F.col("missing"), F.array(*(F.lit(p) for p in ("code", "tests", ASSERTIONS))))
    # Only complete generations count: one cut by max_tokens is a `truncated` reject.
    complete = F.coalesce(F.col("finish_reason") != F.lit(CUT_AT_MAX_TOKENS), F.lit(True))
    return responses.where(~absent & complete)
