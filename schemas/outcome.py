"""The outcome-row contract: the one contract between a stage's transform and the runner.

A transform returns *outcome rows*: the output table's columns (nullable, without
`run_id`) plus

- `source_key`    the input key the row came from (every pending input key must yield
                  at least one outcome row: kept or rejected, never silence),
- `item_id`       the id of the dropped item, for rejects,
- `reject_reason` null for kept rows, a machine-readable reason otherwise,
- `reject_detail` a human-readable detail for rejects,
- `retry_error`   set on rows that failed transiently: logged in `errors`, and their
                  input key stays pending so the next run retries it.
- `USAGE` columns (optional): what the task used, summed into `runs` by the runner.

The words themselves are here too, one meaning each: `Source` names the stage a row
comes from (`rejects.stage`, `progress.stage`, `runs.stage`), `Reason` every reject
reason any stage writes (`rejects.reason`). `reject(...)` and `retry(...)` build the
outcome columns of a dropped or a transiently failed row.

Words: a *seed* is a function kept for generation (judged good, `seed_id`); a *cluster
representative* is the member dedup keeps of a near-duplicate cluster; a *random seed*
(`run.seed`) fixes sampling and shuffles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the vocabulary is imported where pyspark may be missing (the CLI's checks)
    import pandas as pd
    from pyspark.sql.types import StructType

    from schemas.spec import TableSpec

SOURCE_KEY = "source_key"
ITEM_ID = "item_id"
REJECT_REASON = "reject_reason"
REJECT_DETAIL = "reject_detail"
RETRY_ERROR = "retry_error"
OUTCOME_COLUMNS = (SOURCE_KEY, ITEM_ID, REJECT_REASON, REJECT_DETAIL)
# What the tasks used (udfs/accounting.py), on some outcome rows, summed by the runner and
# never written to a table; True: whole numbers.
TOKENS_IN = "_tokens_in"
TOKENS_OUT = "_tokens_out"
ENGINE_SECONDS = "_engine_s"
GPU_SECONDS = "_gpu_s"
CPU_SECONDS = "_cpu_s"
USAGE: dict[str, bool] = {TOKENS_IN: True, TOKENS_OUT: True, ENGINE_SECONDS: False,
                          GPU_SECONDS: False, CPU_SECONDS: False}


class Word(str, Enum):
    """A string that is one of a fixed set: compares, hashes, pickles and formats as its
    text, so it goes into DataFrames, f-strings and tables as is (enum.StrEnum is 3.11+)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


class Source(Word):
    """The stages and steps, by the name they record under."""

    EXTRACT = "extract"
    DECONTAMINATE = "decontaminate"
    TYPECHECK = "typecheck"
    DEDUP = "dedup"
    JUDGE = "judge"
    CONCEPTS = "concepts"
    INSTRUCT = "instruct"
    RESPOND = "respond"
    EXECUTE = "execute"
    SELECT = "select"
    EXPORT = "export"
    TRAIN = "train"
    EVALUATE = "evaluate"


class Reason(Word):
    """Every reject reason, grouped by the stage that writes it."""

    # extract, a whole file (udfs/extract.py)
    NOT_PYTHON = "not_python"
    EMPTY_CONTENT = "empty_content"
    NOT_UTF8 = "not_utf8"
    BINARY_CONTENT = "binary_content"
    NUL_BYTES = "nul_bytes"
    FILE_TOO_LARGE = "file_too_large"
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    PYTHON2_SYNTAX = "python2_syntax"
    UNTERMINATED_TOKEN = "unterminated_token"
    SYNTAX_ERROR = "syntax_error"
    PARSE_ERROR = "parse_error"
    NO_DOCSTRING_FUNCTIONS = "no_docstring_functions"
    # extract, one function: its rules, then exact copies
    NO_RETURN_VALUE = "no_return_value"
    NO_ARGUMENTS = "no_arguments"
    TOO_LONG = "too_long"
    HAS_MARKER = "has_marker"
    BANNED_IMPORT = "banned_import"
    EXACT_DUPLICATE = "exact_duplicate"
    # decontaminate, typecheck, dedup
    BENCHMARK_CONTAMINATION = "benchmark_contamination"
    TYPE_ERROR = "type_error"
    PYRIGHT_CRASH = "pyright_crash"
    PYRIGHT_TIMEOUT = "pyright_timeout"
    NEAR_DUPLICATE = "near_duplicate"
    # the model stages: judge, concepts, instruct, respond
    JUDGE_NO = "judge_no"
    JUDGE_UNPARSEABLE = "judge_unparseable"
    NO_CONCEPTS = "no_concepts"
    NO_INSTRUCTION = "no_instruction"
    GENERATION_ERROR = "generation_error"
    TRUNCATED = "truncated"
    RESPONSE_MISSING_PARTS = "response_missing_parts"
    NO_TESTS = "no_tests"
    # execute: execution_<the sandbox's status> (udfs/sandbox/verdict.py STATUSES)
    EXECUTION_FAIL = "execution_fail"
    EXECUTION_TIMEOUT = "execution_timeout"
    EXECUTION_MEMORY = "execution_memory"
    EXECUTION_CRASH = "execution_crash"
    # select
    NO_PASSING_RESPONSE = "no_passing_response"
    NO_USABLE_RESPONSE = "no_usable_response"
    UNPARSABLE_CODE = "unparsable_code"
    PLACEHOLDER_IN_RESPONSE = "placeholder_in_response"
    DUPLICATE_INSTRUCTION = "duplicate_instruction"
    DUPLICATE_RESPONSE = "duplicate_response"
    NEAR_DUPLICATE_INSTRUCTION = "near_duplicate_instruction"
    SAME_FUNCTION_NAMES = "same_function_names"
    # any stage: a row that failed transiently in run.max_attempts runs (jobs/core/runner.py)
    GAVE_UP_AFTER_RETRIES = "gave_up_after_retries"

    @classmethod
    def execution(cls, status: str) -> Reason:
        """The reject of a program the sandbox ran to `status` (not pass, not sandbox-error)."""
        return cls(f"execution_{status}")


def reject(reason: Reason, detail: str | None = None) -> dict[str, str | None]:
    """The outcome columns of a dropped row (merge them into the row)."""
    return {REJECT_REASON: reason.value, REJECT_DETAIL: detail}


def retry(error: str) -> dict[str, str]:
    """The outcome column of a row that failed transiently: its key stays pending."""
    return {RETRY_ERROR: error}


def outcome_schema(output: TableSpec, usage: bool = False) -> StructType:
    """Outcome rows of a stage writing `output`: its columns (nullable, no run_id) + outcome
    ones; usage: + the accounting columns its tasks fill (udfs/accounting.py USAGE)."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    fields = [StructField(f.name, f.dataType, True) for f in output.schema.fields if f.name != "run_id"]
    extra = [StructField(name, StringType(), True) for name in (*OUTCOME_COLUMNS, RETRY_ERROR)]
    counted = [StructField(name, LongType() if whole else DoubleType(), True)
               for name, whole in USAGE.items()] if usage else []
    return StructType(fields + extra + counted)


def outcome_frame(rows: Iterable[Mapping[str, Any]], schema: StructType) -> pd.DataFrame:
    """A pandas batch with exactly the schema's columns; absent keys become nulls (None)."""
    import pandas as pd

    names = schema.fieldNames()
    return pd.DataFrame([{name: row.get(name) for name in names} for row in rows], columns=pd.Index(names))
