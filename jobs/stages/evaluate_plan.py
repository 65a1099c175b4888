"""evaluate's plan (driver side): from the config, what is generated and how it is judged.

The decodings (greedy pass@1, sampled pass@k, or the reference self-test), the prompt
format and its wording, the stop sequences, the sandbox's limits and time rules, the
benchmark files, and the eval id that hashes all of them: the same evaluation run again
resumes under the same id. `plan_for` builds the `Plan` once per invocation; the stage
(jobs/stages/evaluate.py) hands it to its executors as plain values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType

from jobs.core.config import PipelineConfig
from jobs.core.failures import StageError
from jobs.tools.benchmarks import load_or_fetch
from schemas.outcome import Source
from udfs.evaluation import ExecSettings, Problem, load_problems
from udfs.evaluation.instruct import INSTRUCT_STOP, instruct_prompt
from udfs.evaluation.template import EvalInstructTemplate, load_eval_template
from udfs.llm import EngineSettings, SamplingParams, make_engine
from udfs.prompts import PromptConfigError, SftTemplate, load_sft_template
from udfs.sandbox import Limits

NAME = Source.EVALUATE
KEY = "eval_key"
# Prompt format and harness version: a change makes a new eval id (a fresh evaluation).
FORMAT_VERSION = "eval-v1"
REFERENCE = "reference"
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


@dataclass(frozen=True)
class Plan:
    """Everything an executor needs, as plain values pickled into the tasks."""

    eval_id: str
    model: str
    settings: ExecSettings
    workers: int
    params: dict[str, SamplingParams]  # decoding -> sampling (stop set per prompt)
    stop: tuple[str, ...] | None  # None: each prompt's own
    seed: int
    prompt_format: str = "completion"  # evaluate.prompt_format
    template: SftTemplate | None = None  # instruct format, completions API: the SFT layout
    wording: EvalInstructTemplate | None = None  # instruct format: evaluate.instruct_template


def decodings(cfg: PipelineConfig) -> dict[str, SamplingParams]:
    ev = cfg.evaluate
    if ev.reference:
        return {REFERENCE: SamplingParams()}
    bos = add_bos(cfg)
    # Greedy pass@1 always; pass@k from evaluate.samples completions when asked.
    chosen = {"greedy": SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=ev.max_tokens,
                                       add_bos=bos)}
    if ev.samples:
        chosen["sampled"] = SamplingParams(n=ev.samples, temperature=ev.temperature, top_p=ev.top_p,
                                           max_tokens=ev.max_tokens, seed=cfg.run.seed, add_bos=bos)
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


def stop_sequences(cfg: PipelineConfig) -> tuple[str, ...] | None:
    """None (each prompt style's own), or none at all for chat models, whose answers open
    with prose and a code fence that the base-model stops would cut."""
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


def asked(problems: Sequence[Problem], plan: Plan) -> list[tuple[str, str, str]]:
    return [(p.benchmark, p.task_id, decoding) for decoding in plan.params for p in problems]


