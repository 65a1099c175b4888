"""evaluate: HumanEval / HumanEval+ / MBPP / MBPP+ pass@k of the configured model.

Per task and decoding (greedy: one completion at temperature 0, for pass@1; sampled:
evaluate.samples completions at temperature 0.8, for pass@k) the engine completes
the task's prompt (jobs/generation.generate, one engine per Python worker), then one
mapInPandas task runs all of that task's completions in the sandbox: for HumanEval+ and
MBPP+ it first computes the expected outputs with the reference solution, once, and keeps
them on its own disk for the completions (udfs/evaluation/). With evaluate.reference
the completions are the reference solutions and no engine is used: every set must then
score 100, which tests the harness. What is generated and how it is judged (the plan, the
eval id) is decided on the driver by jobs/stages/evaluate_plan.py.

Rows go to `eval_samples` (one per completion) and the figures to `eval_results`. The
samples are keyed by an eval id, the hash of whatever decides a verdict (model, decoding
and BOS, prompt format and wording, benchmark files, sandbox and time limits), through the
runner's chunked commits: running the same evaluation again resumes it where it stopped and
re-runs nothing. A sandbox-error (the sandbox could not start, not the program's fault) or
a generation that failed transiently leaves its task pending for the next run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.runner import run
from jobs.core.stage import Chunking, Stage, StageRun, StageSummary
from jobs.stages.evaluate_plan import (
    FORMAT_VERSION,
    INPUT_SCHEMA,
    KEY,
    NAME,
    REFERENCE,
    Plan,
    asked,
    input_rows,
    load,
    plan_for,
)
from jobs.stages.generation import (
    GenerationSettings,
    generate,
    generation_settings,
    lineage,
    row_seed,
)
from schemas import EVAL_RESULTS, EVAL_SAMPLES
from schemas.outcome import ITEM_ID, RETRY_ERROR, SOURCE_KEY, outcome_schema, retry
from udfs.evaluation import Problem, Verdict, evaluate_task, format_results, summarize
from udfs.llm import Engine
from udfs.sandbox import choose_isolation

log = logging.getLogger("selfalign")

OUTCOME_SCHEMA = outcome_schema(EVAL_SAMPLES)

GENERATED_SCHEMA = StructType([
    StructField(KEY, StringType(), False),
    StructField("sample_index", IntegerType(), True),
    StructField("completion", StringType(), True),
    StructField("finish_reason", StringType(), True),
    StructField("model", StringType(), True),
    StructField("sampling", StringType(), True),
    StructField("generation_error", StringType(), True),
    StructField(RETRY_ERROR, StringType(), True),
])


@dataclass
class EvalOutcome:
    eval_id: str
    model: str
    summary: StageSummary
    results: list[dict[str, Any]]
    failures: list[dict[str, Any]] = field(default_factory=list)  # reference mode only
    missing: dict[str, int] = field(default_factory=dict)  # set/decoding -> tasks without rows


# --- generation (executors, through jobs/generation) -----------------------------------------

def completion_rows(records: list[dict[str, Any]], engine: Engine, plan: Plan) -> list[dict[str, Any]]:
    params = []
    for record in records:
        base = plan.params[record["decoding"]]
        stop = plan.stop if plan.stop is not None else tuple(record["stop"])
        seed = None
        if record["decoding"] == "sampled" and base.seed is not None:
            seed = row_seed(hashlib.sha256(record[KEY].encode()).hexdigest(), base.seed)
        params.append(replace(base, stop=stop, seed=seed))
    generations = engine.generate([r["prompt"] for r in records], params)
    rows: list[dict[str, Any]] = []
    for record, param, generation in zip(records, params, generations, strict=True):
        made = lineage(engine, FORMAT_VERSION, param)
        key = record[KEY]
        if not generation.ok:
            error = generation.error or "generation failed"
            column = RETRY_ERROR if generation.transient else "generation_error"
            rows.append({KEY: key, column: error, **made})
            continue
        for index, completion in enumerate(generation.completions):
            rows.append({KEY: key, "sample_index": index, "completion": completion.text,
                         "finish_reason": completion.finish_reason, **made})
    return rows


def with_completions(tasks: DataFrame, plan: Plan, generation: GenerationSettings) -> DataFrame:
    """tasks + completions, finish_reasons (arrays in sample order), model, sampling, errors."""
    generated = generate(tasks.select(KEY, "decoding", "prompt", "stop"), KEY, GENERATED_SCHEMA,
                         generation, lambda records, engine: completion_rows(records, engine, plan))
    sample = F.struct("sample_index", "completion", "finish_reason")
    grouped = generated.groupBy(KEY).agg(
        F.array_sort(F.collect_list(F.when(F.col("sample_index").isNotNull(), sample))).alias("s"),
        F.first("model", ignorenulls=True).alias("model"),
        F.first("sampling", ignorenulls=True).alias("sampling"),
        F.first("generation_error", ignorenulls=True).alias("generation_error"),
        F.first(RETRY_ERROR, ignorenulls=True).alias("generation_retry"),
    ).select(
        KEY,
        F.col("s.completion").alias("completions"),
        F.col("s.finish_reason").alias("finish_reasons"),
        "model", "sampling", "generation_error", "generation_retry",
    )
    return tasks.join(grouped, on=KEY, how="left")


# --- execution (executors) -------------------------------------------------------------------

def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def _retry(record: dict[str, Any], error: str) -> list[dict[str, Any]]:
    key = record[KEY]
    return [{SOURCE_KEY: key, ITEM_ID: key, **retry(error[:1000])}]


def task_rows(record: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """Outcome rows of one task and decoding: one per completion, or one retry row."""
    problem = Problem.from_json(record["problem"])
    decoding = record["decoding"]
    n = int(record["n"])
    model = record.get("model") if _present(record.get("model")) else plan.model
    sampling = record.get("sampling") if _present(record.get("sampling")) else None
    generation_error = None
    if decoding == REFERENCE:
        completions, reasons = [problem.reference], [None]
    else:
        if _present(record.get("generation_retry")):
            return _retry(record, f"generation: {record['generation_retry']}")
        completions = list(record["completions"]) if _present(record.get("completions")) else []
        reasons = list(record["finish_reasons"]) if _present(record.get("finish_reasons")) else []
        if not completions:
            generation_error = record.get("generation_error") or "the engine returned no completion"
            completions, reasons = [""] * n, [None] * n
    if generation_error is not None:
        verdicts = [Verdict("generation-error", str(generation_error)[:500], False,
                            False if problem.plus else None, 0.0)] * n
    else:
        try:
            verdicts = evaluate_task(problem, completions, plan.settings, plan.workers)
        except Exception as exc:  # the host failed (disk, fds): not the completion's fault
            return _retry(record, f"sandbox: {type(exc).__name__}: {exc}")
        broken = [v for v in verdicts if v.status == "sandbox-error"]
        if broken:
            return _retry(record, broken[0].detail or "sandbox error")
    key = record[KEY]
    rows = []
    for index, (completion, reason, verdict) in enumerate(zip(completions, reasons, verdicts, strict=True)):
        rows.append({
            "eval_id": plan.eval_id, "benchmark": problem.benchmark, "task_id": problem.task_id,
            "decoding": decoding, "sample_index": index, "model": model, "completion": completion,
            "finish_reason": reason, "status": verdict.status, "detail": verdict.detail or None,
            "passed": verdict.passed, "base_passed": verdict.base_passed,
            "plus_passed": verdict.plus_passed, "duration_s": round(verdict.duration_s, 4),
            "sampling": sampling, SOURCE_KEY: key, ITEM_ID: f"{key}#{index}",
        })
    return rows


@dataclass(frozen=True)
class EvalSettings:
    plan: Plan
    generation: GenerationSettings | None  # None for the reference self-test (no engine)
    partitions: int  # tasks the evaluation's rows are spread over


def transform(tasks: DataFrame, settings: EvalSettings) -> DataFrame:
    """Input rows (INPUT_SCHEMA) -> one outcome row per tested completion."""
    plan = settings.plan
    if settings.generation is not None:
        tasks = with_completions(tasks, plan, settings.generation)
    names = OUTCOME_SCHEMA.fieldNames()

    def run_tasks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for record in batch.to_dict("records"):
                rows = task_rows(record, plan)
                yield pd.DataFrame([{n: r.get(n) for n in names} for r in rows], columns=pd.Index(names))

    return tasks.repartition(settings.partitions, KEY).mapInPandas(run_tasks, schema=OUTCOME_SCHEMA)


# --- results (driver) ------------------------------------------------------------------------

def read_samples(ctx: Context, plan: Plan, with_detail: bool) -> list[dict[str, Any]]:
    """This evaluation's verdicts, one collect (no completions; details of failures only)."""
    detail = F.when(~F.col("passed"), F.col("detail")) if with_detail else F.lit(None)
    rows = (
        ctx.lake.read(EVAL_SAMPLES)
        .where(F.col("eval_id") == F.lit(plan.eval_id))
        .select("benchmark", "task_id", "decoding", "passed", "base_passed", "plus_passed",
                "status", detail.cast("string").alias("detail"))
        .collect()
    )
    return [row.asDict() for row in rows]


def report(outcome: EvalOutcome) -> str:
    """What `selfalign evaluate` prints: the pass@k table, then what is missing or failed."""
    lines = [f"evaluate: model {outcome.model}  eval {outcome.eval_id}", "",
             format_results(outcome.results)]
    for name, count in sorted(outcome.missing.items()):
        lines.append(f"warning: {name}: {count} tasks have no verdict yet (see `errors`); "
                     "run again to retry them")
    if outcome.failures:
        lines += ["", f"{len(outcome.failures)} failing:"]
        for f in outcome.failures:
            lines.append(f"  {f['benchmark']:<14} {f['task_id']:<14} {f['status']:<16} {f['detail'] or ''}")
    return "\n".join(lines)


# --- the stage -------------------------------------------------------------------------------

def settings_for(plan: Plan) -> Callable[[StageRun[EvalSettings]], EvalSettings]:
    def settings(run: StageRun[EvalSettings]) -> EvalSettings:
        """The plan; fails here when no engine is configured or the sandbox is refused."""
        cfg = run.cfg
        generation = None if cfg.evaluate.reference else generation_settings(run)
        _, refusal = choose_isolation(cfg.sandbox.isolation, cfg.sandbox.allow_weaker,
                                      cfg.sandbox.cgroup_parent)
        if refusal is not None:
            raise StageError(f"{NAME}: {refusal}")
        return EvalSettings(plan, generation, run.tasks)

    return settings


def stage_for(problems: Sequence[Problem], plan: Plan) -> Stage[EvalSettings]:
    """The evaluate stage over these problems and this plan (its input is chosen per
    invocation, so the declaration is made per invocation too; it is not a DAG stage)."""

    def read(ctx: Context) -> DataFrame:
        return ctx.spark.createDataFrame(input_rows(problems, plan), INPUT_SCHEMA)

    return Stage(name=NAME, output=EVAL_SAMPLES, key=KEY, read=read, settings=settings_for(plan),
                 transform=transform, chunking=Chunking(rows=lambda cfg: cfg.generation.evaluate_chunk_rows))


def record_results(ctx: Context, plan: Plan, figures: list[dict[str, Any]]) -> None:
    """This run's figures in `eval_results`, also when nothing was left to generate (the
    same evaluation again: its figures under this run's id)."""
    if not figures:
        return
    rows = [(ctx.run_id, plan.eval_id, plan.model, r["benchmark"], r["variant"], r["decoding"],
             r["k"], float(r["pass_at_k"]), r["n_tasks"], r["n_samples"]) for r in figures]
    # Keyed by run id: one write per run, so an append (a MERGE costs a table scan).
    ctx.lake.append(EVAL_RESULTS, ctx.spark.createDataFrame(rows, EVAL_RESULTS.schema))


def run_evaluation(ctx: Context, problems: Sequence[Problem] | None = None) -> EvalOutcome:
    """Run the evaluation (resuming any earlier run of the same eval id), record its
    figures, and read back what is missing and (self-test) what failed."""
    cfg = ctx.cfg
    problems = list(problems) if problems is not None else load(cfg)
    plan = plan_for(cfg)
    log.info("[%s] eval %s: model %s, %d tasks x %s", NAME, plan.eval_id, plan.model,
             len(problems), ", ".join(plan.params))
    summary = run(stage_for(problems, plan), ctx)
    figures, missing, failed = summarize(read_samples(ctx, plan, cfg.evaluate.reference),
                                         asked(problems, plan), cfg.evaluate.k, cfg.evaluate.reference)
    record_results(ctx, plan, figures)
    return EvalOutcome(plan.eval_id, plan.model, summary, figures, failed, missing)
