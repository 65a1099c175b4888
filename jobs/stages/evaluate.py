"""evaluate: HumanEval / HumanEval+ / MBPP / MBPP+ pass@k of the configured model.

Per task and decoding (greedy: one completion at temperature 0, for pass@1; sampled:
evaluate.samples completions at temperature 0.8, for pass@k) the engine completes
the task's prompt (jobs/generation.generate, one engine per Python worker), then one
mapInPandas task runs all of that task's completions in the sandbox: for HumanEval+ and
MBPP+ it first computes the expected outputs with the reference solution, once, and keeps
them on its own disk for the completions (udfs/evaluation/). With evaluate.reference
the completions are the reference solutions and no engine is used: every set must then
score 100, which tests the harness.

Rows go to `eval_samples` (one per completion) and the figures to `eval_results`. The
samples are keyed by an eval id, the hash of whatever decides a verdict (model, decoding
and BOS, prompt format and wording, benchmark files, sandbox and time limits), through the
runner's chunked commits: running the same evaluation again resumes it where it stopped and
re-runs nothing. A sandbox-error (the sandbox could not start, not the program's fault) or
a generation that failed transiently leaves its task pending for the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType

from jobs.core.config import PipelineConfig
from jobs.core.context import Context
from jobs.core.failures import StageError
from jobs.core.runner import StageSummary, run
from jobs.core.stage import Chunking, Stage
from jobs.stages.generation import (
    GenerationSettings,
    generate,
    generation_settings,
    lineage,
    row_seed,
)
from jobs.tools.benchmarks import load_or_fetch
from schemas import EVAL_RESULTS, EVAL_SAMPLES
from schemas.outcome import ITEM_ID, RETRY_ERROR, SOURCE_KEY, outcome_schema
from udfs.evaluation import (
    ExecSettings,
    Problem,
    Verdict,
    evaluate_task,
    format_results,
    load_problems,
    summarize,
)
from udfs.evaluation.instruct import INSTRUCT_STOP, instruct_prompt
from udfs.evaluation.template import EvalInstructTemplate, load_eval_template
from udfs.llm import Engine, EngineSettings, SamplingParams, make_engine
from udfs.prompts import PromptConfigError, SftTemplate, load_sft_template
from udfs.sandbox import Limits, choose_isolation

log = logging.getLogger("selfalign")

NAME = "evaluate"
KEY = "eval_key"
# Prompt format and harness version: a change makes a new eval id (a fresh evaluation).
FORMAT_VERSION = "eval-v1"
REFERENCE = "reference"
OUTCOME_SCHEMA = outcome_schema(EVAL_SAMPLES)

INPUT_SCHEMA = StructType([
    StructField(KEY, StringType(), False),
    StructField("benchmark", StringType(), False),
    StructField("task_id", StringType(), False),
    StructField("decoding", StringType(), False),
    StructField("n", IntegerType(), False),
    StructField("prompt", StringType(), False),
    StructField("stop", ArrayType(StringType()), False),
    StructField("problem", StringType(), False),  # udfs.evaluation.Problem as JSON
])

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


@dataclass(frozen=True)
class Plan:
    """Everything an executor needs, as plain values pickled into the tasks."""

    eval_id: str
    model: str
    settings: ExecSettings
    workers: int
    params: dict[str, SamplingParams]  # decoding -> sampling (stop set per prompt)
    stop: tuple[str, ...] | None  # evaluate.stop, else each prompt's own
    seed: int
    prompt_format: str = "completion"  # evaluate.prompt_format
    template: SftTemplate | None = None  # instruct format, completions API: the SFT layout
    wording: EvalInstructTemplate | None = None  # instruct format: evaluate.instruct_template


@dataclass
class EvalOutcome:
    eval_id: str
    model: str
    summary: StageSummary
    results: list[dict[str, Any]]
    failures: list[dict[str, Any]] = field(default_factory=list)  # reference mode only
    missing: dict[str, int] = field(default_factory=dict)  # set/decoding -> tasks without rows


# --- planning (driver) ---------------------------------------------------------------------

def decodings(cfg: PipelineConfig) -> dict[str, SamplingParams]:
    ev = cfg.evaluate
    if ev.reference:
        return {REFERENCE: SamplingParams()}
    chosen: dict[str, SamplingParams] = {}
    bos = add_bos(cfg)
    if ev.greedy:
        chosen["greedy"] = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=ev.max_tokens,
                                          add_bos=bos)
    if ev.samples:
        chosen["sampled"] = SamplingParams(n=ev.samples, temperature=ev.temperature, top_p=ev.top_p,
                                           max_tokens=ev.max_tokens, seed=cfg.run.seed, add_bos=bos)
    if not chosen:
        raise StageError("evaluate: nothing to generate: set evaluate.greedy=true or evaluate.samples>0 "
                         "(or evaluate.reference=true for the self-test)")
    return chosen


# Engines that tokenize in-process and so can send exactly the token ids training used.
TOKENIZING_ENGINES = ("vllm", "transformers")


def add_bos(cfg: PipelineConfig) -> bool | None:
    """SamplingParams.add_bos for evaluate.add_bos: True (one BOS first, as training
    encodes prompts), False (none), or None (the engine's default: the text as given)."""
    ev, llm = cfg.evaluate, cfg.llm
    if llm.api == "chat":
        return None  # the server applies the model's chat template, which places the BOS
    if ev.add_bos == "auto":
        return True if ev.prompt_format == "instruct" and llm.engine in TOKENIZING_ENGINES else None
    if llm.engine == "openai":
        raise StageError(f"{NAME}: evaluate.add_bos={str(ev.add_bos).lower()} needs the token ids, "
                         "but llm.engine=openai sends text that the server tokenizes: use "
                         "llm.engine=vllm or transformers, or evaluate.add_bos=auto (the server's "
                         "own BOS handling)")
    return ev.add_bos


def exec_settings(cfg: PipelineConfig) -> ExecSettings:
    ev = cfg.evaluate
    limits = replace(Limits.from_settings(cfg.sandbox), memory_bytes=ev.memory_bytes)
    return ExecSettings(limits=limits, isolation=cfg.sandbox.isolation,
                        allow_weaker=cfg.sandbox.allow_weaker,
                        cgroup_parent=cfg.sandbox.cgroup_parent, min_time_limit=ev.min_time_limit,
                        time_limit_factor=ev.time_limit_factor, max_cpu_seconds=ev.max_cpu_seconds)


def model_name(cfg: PipelineConfig) -> str:
    if cfg.evaluate.reference:
        return REFERENCE
    described = make_engine(EngineSettings.from_settings(cfg.llm)).describe()
    return str(described.get("model") or described.get("engine") or cfg.llm.model)


def benchmark_files(cfg: PipelineConfig) -> dict[str, str]:
    """Set -> the file its tasks come from, for every set the evaluation reads (MBPP's
    task ids come from the MBPP+ file with mbpp_tasks=evalplus)."""
    ev = cfg.evaluate
    used = list(ev.sets)
    if "mbpp" in used and ev.mbpp_tasks == "evalplus" and "mbppplus" not in used:
        used.append("mbppplus")
    return {name: ev.benchmark_files[name] for name in sorted(used)}


def eval_id(cfg: PipelineConfig, params: dict[str, SamplingParams],
            template: SftTemplate | None = None, wording: EvalInstructTemplate | None = None) -> str:
    """Hash of what decides a verdict; the same evaluation run again resumes under it."""
    ev = cfg.evaluate
    identity = {
        "format": FORMAT_VERSION,
        "model": REFERENCE if ev.reference else {
            "engine": cfg.llm.engine, "model": cfg.llm.model, "api": cfg.llm.api},
        "decodings": {name: p.as_dict() for name, p in sorted(params.items())},  # add_bos too
        "stop": stop_sequences(cfg),
        "execution": asdict(exec_settings(cfg)),  # sandbox limits and time rules
        # Another file of a set (MBPP+ v0.1.0 or v0.2.0) is another task set: fresh samples.
        "files": benchmark_files(cfg),
    }
    if ev.prompt_format == "instruct" and not ev.reference:
        identity["prompt"] = {"format": "instruct", "template": template.version if template else "chat",
                              "wording": wording.version if wording else None}
    if "mbpp" in ev.sets and ev.mbpp_tasks != "evalplus":
        identity["mbpp_tasks"] = ev.mbpp_tasks
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load(cfg: PipelineConfig) -> list[Problem]:
    """The configured sets' problems; BenchmarkMissing (one line) when a file is absent."""
    ev = cfg.evaluate
    return load_or_fetch(lambda: load_problems(ev.sets, ev.benchmark_files, ev.benchmarks_dir, ev.limit,
                                               ev.mbpp_tasks),
                         ev.benchmarks_dir, "benchmarks.dir",
                         names=set(benchmark_files(cfg).values()))


def engine_prompt(problem: Problem, plan: Plan) -> tuple[str, tuple[str, ...]]:
    """What the engine is given for a problem, and where its completion stops."""
    if plan.prompt_format != "instruct" or plan.params.keys() == {REFERENCE}:
        return problem.prompt, problem.stop
    if plan.wording is None:
        raise ValueError("evaluate: the instruct format needs its wording (evaluate.instruct_template)")
    return instruct_prompt(problem, plan.template, plan.wording), INSTRUCT_STOP


def input_rows(problems: Sequence[Problem], plan: Plan) -> list[tuple[Any, ...]]:
    rows = []
    for decoding, params in plan.params.items():
        for p in problems:
            key = f"{plan.eval_id}/{decoding}/{p.benchmark}/{p.task_id}"
            prompt, stop = engine_prompt(p, plan)
            rows.append((key, p.benchmark, p.task_id, decoding, params.n, prompt, list(stop),
                         p.to_json()))
    return rows


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
    return [{SOURCE_KEY: key, ITEM_ID: key, RETRY_ERROR: error[:1000]}]


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

def stop_sequences(cfg: PipelineConfig) -> tuple[str, ...] | None:
    """evaluate.stop; else None (each prompt style's own), or none at all for chat models,
    whose answers open with prose and a code fence that the base-model stops would cut."""
    if cfg.evaluate.stop is not None:
        return tuple(cfg.evaluate.stop)
    return () if cfg.llm.api == "chat" and not cfg.evaluate.reference else None


def instruct_template(cfg: PipelineConfig) -> SftTemplate | None:
    """The SFT layout instruct prompts go through; None for a chat server (its own)."""
    if cfg.llm.api == "chat":
        return None
    try:
        return load_sft_template(cfg.generation.prompts_dir)
    except PromptConfigError as exc:
        raise StageError(f"{NAME}: {exc}") from None


def instruct_wording(cfg: PipelineConfig) -> EvalInstructTemplate:
    """The instruct format's wording: the file evaluate.instruct_template names."""
    try:
        return load_eval_template(cfg.evaluate.instruct_template, cfg.generation.prompts_dir)
    except PromptConfigError as exc:
        raise StageError(f"{NAME}: {exc}") from None


def plan_for(cfg: PipelineConfig) -> Plan:
    params = decodings(cfg)
    instruct = cfg.evaluate.prompt_format == "instruct" and not cfg.evaluate.reference
    # Read once: the id and the prompts.
    template = instruct_template(cfg) if instruct else None
    wording = instruct_wording(cfg) if instruct else None
    return Plan(eval_id=eval_id(cfg, params, template, wording), model=model_name(cfg),
                settings=exec_settings(cfg), workers=cfg.evaluate.workers, params=params,
                stop=stop_sequences(cfg), seed=cfg.run.seed, prompt_format=cfg.evaluate.prompt_format,
                template=template, wording=wording)


def settings(ctx: Context) -> EvalSettings:
    """The plan; fails here when no engine is configured or the sandbox is refused."""
    cfg = ctx.cfg
    generation = None if cfg.evaluate.reference else generation_settings(ctx, NAME)
    _, refusal = choose_isolation(cfg.sandbox.isolation, cfg.sandbox.allow_weaker,
                                  cfg.sandbox.cgroup_parent)
    if refusal is not None:
        raise StageError(f"{NAME}: {refusal}")
    partitions = int(ctx.spark.conf.get("spark.sql.shuffle.partitions") or "2")
    return EvalSettings(plan_for(cfg), generation, partitions)


def asked(problems: Sequence[Problem], plan: Plan) -> list[tuple[str, str, str]]:
    return [(p.benchmark, p.task_id, decoding) for decoding in plan.params for p in problems]


def stage_for(problems: Sequence[Problem]) -> Stage[EvalSettings]:
    """The evaluate stage over these problems (its input is chosen per invocation, so the
    declaration is made per invocation too; it is not a DAG stage)."""

    def read(ctx: Context) -> DataFrame:
        return ctx.spark.createDataFrame(input_rows(problems, plan_for(ctx.cfg)), INPUT_SCHEMA)

    def record_results(ctx: Context, settings: EvalSettings, summary: StageSummary) -> None:
        plan = settings.plan
        figures, _, _ = summarize(read_samples(ctx, plan, False), asked(problems, plan),
                                  ctx.cfg.evaluate.k, False)
        if figures:
            rows = [(ctx.run_id, plan.eval_id, plan.model, r["benchmark"], r["variant"],
                     r["decoding"], r["k"], float(r["pass_at_k"]), r["n_tasks"], r["n_samples"])
                    for r in figures]
            # Keyed by run id: one write per run, so an append (a MERGE costs a table scan).
            ctx.lake.append(EVAL_RESULTS, ctx.spark.createDataFrame(rows, EVAL_RESULTS.schema))

    return Stage(name=NAME, output=EVAL_SAMPLES, key=KEY, read=read, settings=settings,
                 transform=transform, chunking=Chunking(rows=lambda cfg: cfg.generation.evaluate_chunk_rows),
                 after=(record_results,), runs_when_idle=True)


def run_evaluation(ctx: Context, problems: Sequence[Problem] | None = None) -> EvalOutcome:
    """Run the evaluation (resuming any earlier run of the same eval id) and read back its
    figures, what is missing, and (self-test) what failed."""
    cfg = ctx.cfg
    problems = list(problems) if problems is not None else load(cfg)
    plan = plan_for(cfg)
    log.info("[%s] eval %s: model %s, %d tasks x %s", NAME, plan.eval_id, plan.model,
             len(problems), ", ".join(plan.params))
    summary = run(stage_for(problems), ctx)
    figures, missing, failed = summarize(read_samples(ctx, plan, cfg.evaluate.reference),
                                         asked(problems, plan), cfg.evaluate.k, cfg.evaluate.reference)
    return EvalOutcome(plan.eval_id, plan.model, summary, figures, failed, missing)
