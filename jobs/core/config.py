"""Typed pipeline configuration loaded from YAML, with `--set a.b=value` overrides.

Every error is one line naming the offending key, because the people reading it
are looking at a failed nightly job log, not at a Python traceback.

Two modules: jobs/core/sections.py declares every key with its default, type and bounds,
one small class per section (conf/local.yaml holds only what differs); this one assembles
them into PipelineConfig, loads YAML, profiles and overrides, and says what replaced each
key that no longer exists (REMOVED). The sections are importable from here too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import Field, ValidationError, model_validator

from jobs.core.sections import (
    BenchmarksConfig,
    CostConfig,
    DecontaminateConfig,
    DedupConfig,
    EvaluateConfig,
    ExportConfig,
    ExtractConfig,
    GenerationConfig,
    InputConfig,
    LakeConfig,
    LLMConfig,
    LSHConfig,
    RunConfig,
    SampleConfig,
    SandboxConfig,
    Section,
    SelectConfig,
    SparkConfig,
    TrainConfig,
    TypecheckConfig,
)


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the YAML."""


# Keys that no longer exist -> what replaced them (checked before "unknown key").
_SEED = "derived from run.seed (derived_seed in jobs/core/sections.py)"
_SPARK = "set the Spark property through spark.extra"
_ENGINE = "a constant of the engine (udfs/llm/base.py EngineSettings)"
_LIMIT = "a constant of the sandbox (udfs/sandbox/limits.py Limits)"
_DECONTAM = "a constant of decontamination (udfs/decontam.py DecontamSettings)"
_EVALPLUS = "a constant of EvalPlus's time rules (EvaluateConfig)"
_RECIPE = "a constant of the published recipe (TrainConfig)"
REMOVED: dict[str, str] = {
    "sample.seed": _SEED, "dedup.seed": _SEED, "select.seed": _SEED, "llm.seed": _SEED,
    "train.seed": _SEED,
    "execute.chunk_rows": "execute commits run.chunk_rows / 10 responses per chunk",
    "evaluate.chunk_rows": "evaluate commits generation.chunk_rows / 4 tasks per chunk",
    "dedup.fp_weight": "the LSH weights follow dedup.verify (see lsh)",
    "dedup.fn_weight": "the LSH weights follow dedup.verify (see lsh)",
    "dedup.candidate_threshold": "the LSH bands' threshold follows dedup.verify (see lsh)",
    "dedup.num_perm": "use lsh.num_perm (shared by dedup and select)",
    "select.num_perm": "select uses half of lsh.num_perm",
    "dedup.max_iterations": "a constant (LSHConfig.max_iterations)",
    "select.max_iterations": "a constant (LSHConfig.max_iterations)",
    "llm.connect_timeout_seconds": _ENGINE, "llm.check_timeout_seconds": _ENGINE,
    "llm.backoff_seconds": _ENGINE, "llm.backoff_max_seconds": _ENGINE, "llm.max_retries": _ENGINE,
    "llm.timeout_seconds": _ENGINE,
    "spark.app_name": _SPARK + " (spark.app.name)", "spark.ui_enabled": _SPARK + " (spark.ui.enabled)",
    "spark.arrow_batch_rows": _SPARK + " (spark.sql.execution.arrow.maxRecordsPerBatch)",
    "decontaminate.benchmarks_dir": "use benchmarks.dir",
    "decontaminate.benchmarks": "use benchmarks.files (set -> file; every set is checked)",
    "evaluate.benchmarks_dir": "use benchmarks.dir",
    "decontaminate.ngram_tokens": _DECONTAM, "decontaminate.min_substring_chars": _DECONTAM,
    "decontaminate.min_ngram_hits": _DECONTAM, "decontaminate.max_ngram_tasks": _DECONTAM,
    "decontaminate.min_distinctive_tokens": _DECONTAM,
    "typecheck.python_version": "a constant (TypecheckConfig)",
    "typecheck.batch_size": "a constant (TypecheckConfig)",
    "sandbox.max_processes": _LIMIT, "sandbox.file_size_bytes": _LIMIT, "sandbox.disk_bytes": _LIMIT,
    "sandbox.open_files": _LIMIT, "sandbox.output_bytes": _LIMIT,
    "evaluate.min_time_limit": _EVALPLUS, "evaluate.time_limit_factor": _EVALPLUS,
    "evaluate.max_cpu_seconds": _EVALPLUS, "evaluate.memory_bytes": _EVALPLUS + " (4 GiB)",
    "evaluate.top_p": "sampled decoding uses top_p 0.95 (EvaluateConfig)",
    "evaluate.temperature": "sampled decoding uses temperature 0.8 (EvaluateConfig)",
    "evaluate.stop": "stop sequences follow evaluate.prompt_format (udfs/evaluation STOP)",
    "evaluate.workers": "one sandbox run at a time per Spark task (EvaluateConfig)",
    "evaluate.mbpp_tasks": "MBPP is scored on EvalPlus's task set",
    "generation.judge.top_p": "top_p is 1.0 (SamplingConfig)",
    "generation.concepts.top_p": "top_p is 1.0 (SamplingConfig)",
    "generation.instruct.top_p": "top_p is 1.0 (SamplingConfig)",
    "generation.respond.top_p": "top_p is 1.0 (SamplingConfig)",
    "generation.concepts.n": "one sample per prompt (n is a key of judge and respond only)",
    "generation.instruct.n": "one sample per prompt (n is a key of judge and respond only)",
    "select.sanitize.drop_probability": "a constant of the published sanitizing (0.5)",
    "select.sanitize.assert_probability": "a constant of the published sanitizing (0.5)",
    "select.sanitize.max_asserts": "a constant of the published sanitizing (5)",
    "train.warmup_ratio": _RECIPE, "train.scheduler": _RECIPE, "train.optimizer": _RECIPE,
    "train.max_grad_norm": _RECIPE, "train.dropout": _RECIPE, "train.logging_steps": _RECIPE,
    "train.max_length": _RECIPE + " (1280 tokens)",
    "train.bf16": "bf16 autocast follows train.dtype (on where the weights load as bfloat16)",
    "train.use_gpu": "GPUs are used where torch sees one (local) or always (cluster)",
    "train.attn_implementation": "flash_attention_2 where installed, else sdpa",
    "evaluate.greedy": "every evaluation scores greedy pass@1 (and samples when evaluate.samples > 0)",
    "extract.max_file_bytes": "a constant (ExtractConfig)",
    "sample.max_file_bytes": "a constant (SampleConfig)",
    "export.rows_per_file": "a constant (ExportConfig)",
    "export.name": "a constant (ExportConfig)",
}

class PipelineConfig(Section):
    lake: LakeConfig = Field(default_factory=LakeConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    benchmarks: BenchmarksConfig = Field(default_factory=BenchmarksConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    typecheck: TypecheckConfig = Field(default_factory=TypecheckConfig)
    lsh: LSHConfig = Field(default_factory=LSHConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    cost: CostConfig = Field(default_factory=CostConfig)

    @model_validator(mode="before")
    @classmethod
    def _s3a_when_used(cls, data: Any) -> Any:
        """spark.s3a_jars unset: true when lake.root or input.path is an s3a:// URI."""
        if not isinstance(data, dict):
            return data
        spark = data.get("spark")
        spark = dict(spark) if isinstance(spark, Mapping) else {} if spark is None else spark
        if not isinstance(spark, dict) or spark.get("s3a_jars") is not None:
            return data
        uris = [section.get(key) for section, key in ((data.get("lake"), "root"), (data.get("input"), "path"))
                if isinstance(section, Mapping)]
        spark["s3a_jars"] = any(isinstance(uri, str) and uri.startswith("s3a://") for uri in uris)
        return {**data, "spark": spark}

    @model_validator(mode="after")
    def _derive(self) -> PipelineConfig:
        """Hand the sections what they derive from: run.seed, lsh, benchmarks."""
        for seeded in (self.sample, self.dedup, self.select, self.llm, self.train):
            seeded._run_seed = self.run.seed
        self.dedup._lsh = self.select._lsh = self.lsh
        self.decontaminate._benchmarks = self.evaluate._benchmarks = self.benchmarks
        return self

    def fingerprint(self) -> str:
        """Stable short hash of the effective config, stored with every run."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _describe(error: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"config: unknown key '{key}'"
    if kind == "missing":
        return f"config: missing required key '{key}'"
    given = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    return f"config: key '{key}': {message} (got {given!r})"


class _Loader(yaml.SafeLoader):
    """YAML 1.2's floats: PyYAML (YAML 1.1) reads `1e-5` (no dot) as a string, and a
    learning rate is written that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


FREE_FORM_MAPS: tuple[tuple[str, ...], ...] = (("spark", "extra"),)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"config: override '{assignment}' must look like key.path=value")
    dotted, _, text = assignment.partition("=")
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"config: override '{assignment}' has an empty key")
    for prefix in FREE_FORM_MAPS:
        # Keys of free-form maps are themselves dotted (spark.extra.spark.executor.memory=8g).
        if tuple(parts[: len(prefix)]) == prefix and len(parts) > len(prefix):
            parts = [*prefix, ".".join(parts[len(prefix) :])]
    node, model = raw, PipelineConfig
    for part in parts[:-1]:
        # A section or a map, in what was read and in the declared keys (a file need not set them).
        field = model.model_fields.get(part) if model is not None else None
        kind = field.annotation if field is not None else None
        model = kind if isinstance(kind, type) and issubclass(kind, Section) else None
        child = node.setdefault(part, {})
        if not isinstance(child, dict) or (field is not None and model is None and get_origin(kind) is not dict):
            raise ConfigError(f"config: override key '{dotted}': '{part}' is not a section")
        node = child
    try:
        node[parts[-1]] = _load_yaml(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"config: override '{assignment}': the value is {problem} "
                          "(quote it to pass a plain string)") from None


def _removed_key(raw: Mapping[str, Any]) -> str | None:
    """The first key of REMOVED that `raw` sets, as its one-line error."""
    for dotted, replaced_by in REMOVED.items():
        node: Any = raw
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return f"config: key '{dotted}' was removed: {replaced_by}"
    return None


def parse_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    for assignment in overrides:
        apply_override(raw, assignment)
    removed = _removed_key(raw)
    if removed:
        raise ConfigError(removed)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                profiles: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Load a YAML config (default: the packaged conf/local.yaml), merge the profiles over
    it in order, then apply the overrides."""
    raw = read_mapping(Path(path) if path is not None else default_config_path(), "config")
    for profile in profiles:
        _merge(raw, read_mapping(profile_path(profile), "profile"))
    return parse_config(raw, overrides)


def profile_path(name: str) -> Path:
    """A packaged profile by name (conf/profiles/<name>.yaml), or a YAML file's path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return Path(name)
    packaged = default_config_path().parent / "profiles"
    path = packaged / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in packaged.glob("*.yaml"))) or "none"
        raise ConfigError(f"profile: no packaged profile '{name}' (packaged: {known}; or give a .yaml path)")
    return path


# Tables a profile replaces whole: a profile's category mix is the mix, not an addition.
WHOLE_TABLES: frozenset[tuple[str, ...]] = frozenset({("generation", "categories")})


def _merge(base: dict[str, Any], layer: Mapping[str, Any], path: tuple[str, ...] = ()) -> None:
    """Merge `layer` into `base` in place: sections merge key by key, values replace."""
    for key, value in layer.items():
        here = (*path, key)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and here not in WHOLE_TABLES:
            _merge(base[key], value, here)
        else:
            base[key] = value


def read_mapping(source: Path, what: str) -> dict[str, Any]:
    if source.is_dir():
        raise ConfigError(f"{what}: {source} is a directory, not a YAML file")
    if not source.is_file():
        raise ConfigError(f"{what}: file not found: {source}")
    try:
        raw = _load_yaml(source.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {source} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {source}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what}: {source}{where} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: {source} must hold a mapping at the top level")
    return raw


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[2] / "conf" / "local.yaml"
