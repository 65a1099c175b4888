"""Typed pipeline configuration loaded from YAML, with `--set a.b=value` overrides.

Every error is one line naming the offending key, because the people reading it
are looking at a failed nightly job log, not at a Python traceback.

One module of ~440 lines on purpose: every key of conf/local.yaml is declared here, one
small class per section, so a reader finds any setting, its type and its bounds in one
place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from udfs.evaluation import DEFAULT_FILES as EVAL_FILES
from udfs.evaluation import SETS as EVAL_SETS
from udfs.extract import KNOWN_RULES
from udfs.sandbox.limits import RANGES as LIMIT_RANGES
from udfs.sandbox.limits import allowed_range


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the YAML."""


class Section(BaseModel):
    # Unknown keys are typos until proven otherwise; strict types stop "0.5" strings.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# One name per part, quoted where used (Unity Catalog allows hyphens); a dot would make
# `main.selfalign` in lake.schema mean two parts.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
# Spark Connect's connection string: sc://host[:port][/;param=value;...]
_REMOTE_RE = re.compile(r"sc://(\[[0-9A-Fa-f:.]+\]|[^\s/:;\[\]]+)(:\d{1,5})?(/(;[^;=\s]+=[^;\s]*)*)?")


class LakeConfig(Section):
    # Where the tables' files live (and the runner's _staging scratch tables).
    root: str = "./lake"
    # Catalog tables (Unity Catalog, Glue, a Hive metastore): with `schema` set, every
    # pipeline table is `catalog.schema.table` (or `schema.table`), its files at root/table.
    # (`schema_`: pydantic's BaseModel already has a `schema`.)
    schema_: str | None = Field(default=None, alias="schema")
    catalog: str | None = None

    @field_validator("schema_", "catalog")
    @classmethod
    def _one_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _NAME_RE.fullmatch(value):
            raise ValueError("expected one name (letters, digits, _ or -), no dots")
        if info.field_name == "catalog" and value is not None and info.data.get("schema_") is None:
            raise ValueError("needs lake.schema too (tables are catalog.schema.table)")
        return value

    @property
    def schema(self) -> str | None:
        return self.schema_


class SparkConfig(Section):
    master: str = "local[2]"
    app_name: str = "selfalign"
    shuffle_partitions: int = Field(default=4, ge=1)
    # Project-local Ivy cache: the Delta jars are fetched once, later runs start offline.
    ivy_dir: str = "./.ivy"
    # The Delta jars' Maven coordinate; null: the one matching the installed delta-spark
    # and pyspark (jobs.core.session.delta_package), so the two cannot drift apart.
    delta_package: str | None = None
    ui_enabled: bool = False
    # Rows per Arrow batch handed to pandas UDFs; source files are large strings.
    arrow_batch_rows: int = Field(default=500, ge=1)
    extra: dict[str, str] = Field(default_factory=dict)
    # Spark Connect (Databricks serverless and shared clusters, any Connect server):
    # sc://host:port[/;param=value]. The SPARK_REMOTE environment variable works too, and
    # is where a token belongs (never in a config file). The keys above are then unused.
    remote: str | None = None
    # Local mode with lake.schema: the embedded Hive metastore (Derby) and the warehouse
    # directory live here; None = <lake.root>/_metastore.
    metastore_dir: str | None = None
    # Local mode on s3a:// paths: load hadoop-aws and its AWS SDK modules (resolved once
    # into ivy_dir like the Delta jars). null: when lake.root or input.path is an s3a://
    # URI (export writes with pyarrow, not Spark). Clusters bring their own (EMRFS s3://, Databricks).
    s3a_jars: bool | None = None
    # More Maven coordinates for local mode (gcs-connector, hadoop-azure, ...).
    packages: list[str] = Field(default_factory=list)

    @field_validator("remote")
    @classmethod
    def _connect_url(cls, value: str | None) -> str | None:
        if value is not None and not _REMOTE_RE.fullmatch(value):
            raise ValueError("expected sc://host:port (optionally /;param=value;...)")
        return value

    @field_validator("extra", mode="before")
    @classmethod
    def _spark_strings(cls, value: Any) -> Any:
        # Spark properties are strings; YAML (and --set) reads `true` and `8` as bool/int.
        if not isinstance(value, dict):
            return value
        def text(v: Any) -> Any:
            if isinstance(v, bool):
                return str(v).lower()
            return str(v) if isinstance(v, int | float) else v
        return {key: text(v) for key, v in value.items()}


class InputConfig(Section):
    # Path or glob of The Stack v1 style parquet: local, s3://, dbfs:/, abfss://.
    path: str = "data/stack_sample/*.parquet"


class SampleConfig(Section):
    out: str = "data/stack_sample/stack_sample.parquet"
    files: int = Field(default=2000, ge=1)
    seed: int = 0
    max_file_bytes: int = Field(default=100_000, ge=1)


class ExtractConfig(Section):
    # New input files up to this many are read by name (no other file is opened); more
    # (a first run, a backfill) are read through input.path and kept by file name.
    read_by_name_max_files: int = Field(default=10_000, ge=1)
    max_file_bytes: int = Field(default=1_000_000, ge=1)
    max_lines: int = Field(default=150, ge=1)
    rules: list[str] = Field(
        default_factory=lambda: [
            "needs_return",
            "needs_args",
            "max_lines",
            "no_markers",
            "no_banned_imports",
        ]
    )
    markers: list[str] = Field(default_factory=lambda: ["TODO", "FIXME", "XXX", "bug"])
    banned_imports: list[str] = Field(
        default_factory=lambda: [
            "argparse",
            "os",
            "subprocess",
            "sys",
            "setuptools",
            "distutils",
            "matplotlib",
            "seaborn",
        ]
    )
    # How the rules read a function (udfs/extract.py); the second value of each is the
    # published rule (seed_gathering/filter_dataset.py, high_quality_subset.py).
    marker_match: Literal["word", "substring"] = "word"
    banned_import_match: Literal["module", "substring"] = "module"
    return_rule: Literal["own_value", "any_value"] = "own_value"
    no_args_match: Literal["ast", "text"] = "ast"

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KNOWN_RULES))
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}; known: {list(KNOWN_RULES)}")
        return value


class BenchmarkFile(Section):
    name: str
    path: str
    # "humaneval" | "mbpp" | "evalplus" | "jsonl" (generic: prompt/solution fields below)
    format: str
    prompt_field: str = "prompt"
    solution_field: str = "canonical_solution"


def default_benchmarks_dir() -> str:
    """Where benchmark files live unless a config says: $SELFALIGN_BENCHMARKS_DIR, else the
    user's cache ($XDG_CACHE_HOME or ~/.cache)/selfalign/benchmarks. The first run that
    needs them downloads them there (sha256-checked)."""
    explicit = os.environ.get("SELFALIGN_BENCHMARKS_DIR")
    if explicit:
        return explicit
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "selfalign" / "benchmarks")


class DecontaminateConfig(Section):
    benchmarks_dir: str = Field(default_factory=default_benchmarks_dir)
    benchmarks: list[BenchmarkFile] = Field(default_factory=list)
    ngram_tokens: int = Field(default=10, ge=1)
    min_substring_chars: int = Field(default=40, ge=1)
    # False-positive guards for the n-gram rule (tuned on stdlib + site-packages functions):
    # distinct n-grams one task must share with a seed, how many tasks an n-gram may occur
    # in and stay indexed, and the non-generic names (not keywords/builtins) it must hold.
    min_ngram_hits: int = Field(default=3, ge=1)
    max_ngram_tasks: int = Field(default=1, ge=1)
    min_distinctive_tokens: int = Field(default=1, ge=0)
    # HumanEval-style canonical bodies that are not contamination (compared after
    # normalization). Default none; published: three short bodies (benchmark_data.py:11-13).
    exempt_bodies: list[str] = Field(default_factory=list)


class TypecheckConfig(Section):
    batch_size: int = Field(default=1000, ge=1)
    timeout_seconds: int = Field(default=600, ge=1)
    python_version: str = "3.11"
    # pyright's mode and its verdict on an import it cannot resolve (udfs/typecheck.py);
    # published: pyright's defaults, standard and error (high_quality_subset.py).
    type_checking_mode: Literal["basic", "standard"] = "basic"
    report_missing_imports: Literal["none", "error"] = "none"


class DedupConfig(Section):
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    num_perm: int = Field(default=256, ge=16)
    shingle_size: int = Field(default=5, ge=1)
    seed: int = 1
    max_iterations: int = Field(default=50, ge=1)
    # The LSH bands are tuned for candidate_threshold (default 0.8 x threshold: 0.4 at
    # 0.5), and every candidate is confirmed on the exact Jaccard of the two shingle sets
    # (verify: exact), on the signatures' estimate (verify: estimate), or not at all
    # (verify: none, as published: text-dedup unions every band collision).
    # Band/row choice leans to recall: a false positive costs one comparison, a false
    # negative is a duplicate kept. 0.2/0.8 at 0.4/256 gives 64x4 (published: 41x6 at
    # 0.5/250 with equal weights).
    candidate_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    verify: Literal["exact", "estimate", "none"] = "exact"
    # words: lower-cased \w+ tokens. nonalpha_split (text-dedup's, as published):
    # re.split(r"\W") of the lower-cased text, empty tokens kept, and a text of fewer than
    # 5 tokens has no shingles and takes no part. Changing it invalidates `minhashes`.
    tokenizer: Literal["words", "nonalpha_split"] = "words"
    fp_weight: float = Field(default=0.2, ge=0.0)
    fn_weight: float = Field(default=0.8, ge=0.0)

    @model_validator(mode="after")
    def _candidates_reach_the_threshold(self) -> DedupConfig:
        if self.candidate_threshold is not None and self.candidate_threshold > self.threshold:
            raise ValueError(f"dedup.candidate_threshold ({self.candidate_threshold}) must not "
                             f"exceed dedup.threshold ({self.threshold})")
        return self

    def bands_threshold(self) -> float:
        """The similarity the LSH bands are tuned for."""
        return self.candidate_threshold if self.candidate_threshold is not None else 0.8 * self.threshold


_ENGINE_RE = re.compile(r"none|openai|vllm|transformers|python:[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class LLMConfig(Section):
    """The generation engine (udfs/llm). Engine-relevant: any change builds a new engine."""

    # "none" (generation stages refuse to run), "openai" (an OpenAI-compatible server),
    # "vllm" (in-process on a GPU executor) or "python:<module>:<Class>" (a class
    # constructed with udfs.llm.EngineSettings copied from this section; how tests plug
    # in their engine on executors).
    engine: str = "none"
    # HF id for vllm; the served model name for openai ("" = the server's first model).
    model: str = "bigcode/starcoder2-15b"
    # --- openai ---
    base_url: str = "http://127.0.0.1:8000/v1"
    # "completions" suits base models prompted with few-shot text; "chat" sends the
    # prompt as one user message (instruct models, servers without /v1/completions).
    api: Literal["completions", "chat"] = "completions"
    # The key itself never goes into config or logs: only the env var's name.
    api_key_env: str = "OPENAI_API_KEY"
    # Requests in flight per Spark task (one engine per Python worker).
    concurrency: int = Field(default=16, ge=1)
    timeout_seconds: float = Field(default=600.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    check_timeout_seconds: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    # --- vllm ---
    dtype: str = "bfloat16"
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = Field(default=None, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    seed: int = 0

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not _ENGINE_RE.fullmatch(value):
            raise ValueError("expected none, openai, vllm, transformers or python:<module>:<Class>")
        return value


class SandboxConfig(Section):
    """How generated programs run (udfs/sandbox); the limits hold per program."""

    # auto = the strongest level here, refused below bwrap+cgroup unless allow_weaker;
    # a named level runs as asked where this machine has it.
    isolation: Literal["auto", "bwrap+cgroup", "bwrap", "netns", "process"] = "auto"
    # A level weaker than asked (or than auto needs) is refused unless this allows it.
    allow_weaker: bool = False
    # A delegated cgroup (v2) or a path under the v1 memory and cpuacct hierarchies' roots
    # for the runs' cgroups; None: selfalign.sandbox under this process's own cgroup, so
    # the container's limit bounds the runs (needs root or a delegated own cgroup).
    cgroup_parent: str | None = None
    cpu_seconds: int = 10  # the whole program (cgroup usage) and each process (RLIMIT_CPU)
    wall_seconds: float = 20.0
    memory_bytes: int = 2 << 30  # the whole program (cgroup) and each process (RLIMIT_AS)
    max_processes: int = 64  # tasks: processes and threads
    file_size_bytes: int = 64 << 20  # one file
    disk_bytes: int = 256 << 20  # each tmpfs it can write: its dir, /tmp, /dev/shm
    open_files: int = 256
    output_bytes: int = 1 << 20  # stdout + stderr
    # Programs run at once per execute task (threads waiting on sandbox processes);
    # None: two per executor core, shared by the tasks it runs at once (jobs/stages/execute.py).
    parallelism: int | None = Field(default=None, ge=1, le=1024)

    @field_validator(*LIMIT_RANGES, mode="before")
    @classmethod
    def _in_range(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        number = value
        if isinstance(value, str):  # YAML reads 1e20 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                return value
        least, most = LIMIT_RANGES[info.field_name]
        if isinstance(number, int | float) and not isinstance(number, bool) and not least <= number <= most:
            raise ValueError(f"must be {allowed_range(info.field_name)}")
        return value


class SamplingConfig(Section):
    n: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1)


# One class per stage, so overriding one key (generation.respond.n=3) keeps the
# stage's other defaults instead of falling back to the generic ones.
class JudgeSampling(SamplingConfig):
    max_tokens: int = Field(default=4, ge=1)
    # How an answer is read (udfs/parse.py parse_judge): first_word, its first word is
    # Yes or No, else unparseable; count (published), Yes when "yes" occurs more often
    # than "no" in the lower-cased answer. The prompt: a file under prompts_dir.
    decision: Literal["first_word", "count"] = "first_word"
    template: str = "judge.yaml"


# The published recipe samples concepts, instructions and responses at temperature 0.7
# with top_p 1.0 and up to 1536 new tokens; an output cut by that cap is rejected.
class PublishedSampling(SamplingConfig):
    temperature: float = Field(default=0.7, ge=0.0)
    max_tokens: int = Field(default=1536, ge=1)


class RespondSampling(PublishedSampling):
    n: int = Field(default=10, ge=1)


class GenerationConfig(Section):
    """The LLM stages: prompts, sampling per stage, chunking and GPU placement."""

    prompts_dir: str | None = None  # None: the packaged conf/prompts
    # Rows per committed chunk: a crash loses at most one chunk of generation.
    chunk_rows: int = Field(default=2000, ge=1)
    # Prompts per engine call: large, so vLLM's continuous batching keeps the GPU full.
    batch_rows: int = Field(default=512, ge=1)
    # On a cluster: attach a ResourceProfile asking llm.tensor_parallel_size GPUs per
    # generation task (each task pins CUDA_VISIBLE_DEVICES to the GPUs it was given).
    gpu_resource_profile: bool = False
    # Local mode with vllm: one task (one engine) per GPU, never one per core.
    local_gpus: int = Field(default=1, ge=1)
    judge: JudgeSampling = Field(default_factory=JudgeSampling)
    concepts: PublishedSampling = Field(default_factory=PublishedSampling)
    instruct: PublishedSampling = Field(default_factory=PublishedSampling)
    respond: RespondSampling = Field(default_factory=RespondSampling)
    # Task category -> weight of its draw, per seed (deterministic). The published
    # StarCoder2 run asked only for function implementations; SelfCodeAlign mixed
    # function 0.5 / class 0.25 / program 0.25. Names are the prompt file's categories.
    categories: dict[str, float] = Field(default_factory=lambda: {"function implementation": 1.0})

    @field_validator("categories")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(w < 0 for w in value.values()) or not sum(value.values()) > 0:
            raise ValueError("needs at least one category, weights >= 0 and a positive total")
        return value


class ExecuteConfig(Section):
    # Responses per committed chunk: a crash loses at most one chunk of sandbox runs.
    chunk_rows: int = Field(default=5000, ge=1)


class SanitizeConfig(Section):
    """The published sanitizing of each SFT pair (udfs/sanitize.py); off: the cleaned
    response as chosen, with its reasoning, explanation and tests."""

    enabled: bool = True
    drop_probability: float = Field(default=0.5, ge=0.0, le=1.0)  # reasoning, explanation
    assert_probability: float = Field(default=0.5, ge=0.0, le=1.0)  # asserts into the instruction
    max_asserts: int = Field(default=5, ge=1)
    # selfalign: placeholders in the code make select choose another response, every
    # comment goes, top-level asserts move. published: the published rules one by one
    # (udfs/sanitize.py lists the differences), its layout check included.
    style: Literal["selfalign", "published"] = "selfalign"


class SelectConfig(Section):
    """Near-duplicate instructions (MinHash-LSH over word shingles, as in dedup), then
    the published sanitizing of the kept pairs."""

    # Instructions are short prose: 3-word shingles, and a higher bar than code dedup's
    # 0.5, since two tasks on one seed share much wording yet ask different things.
    instruction_threshold: float = Field(default=0.7, gt=0.0, lt=1.0)
    num_perm: int = Field(default=128, ge=16)
    shingle_size: int = Field(default=3, ge=1)
    seed: int = 1
    max_iterations: int = Field(default=50, ge=1)
    # Near-duplicate instructions dropped (selfcodealign's step; the StarCoder2 pipeline
    # has none).
    near_duplicates: bool = True
    # per_seed: of one seed's instructions, at most one per set of top-level function
    # names. global (published): over all pairs ever kept, one per instruction, per
    # response and per list of every function name the first code block defines, first
    # come in a seeded shuffle; code that does not parse drops the pair (udfs/diversify.py).
    diversify_function_names: Literal["off", "per_seed", "global"] = "per_seed"
    sanitize: SanitizeConfig = Field(default_factory=SanitizeConfig)

    @field_validator("diversify_function_names", mode="before")
    @classmethod
    def _was_a_switch(cls, value: Any) -> Any:
        # Before "global" existed the key was true/false.
        return {True: "per_seed", False: "off"}.get(value, value) if isinstance(value, bool) else value


class ExportConfig(Section):
    # The `export` step of `selfalign run` (the `selfalign export` command takes its own).
    format: Literal["jsonl", "parquet"] = "jsonl"
    out: str = "./export"
    # Share of instructions in the validation split, by a hash of the instruction id.
    validation_fraction: float = Field(default=0.02, ge=0.0, lt=1.0)
    # Parquet: rows per file (train-00000.parquet, train-00001.parquet, ...).
    rows_per_file: int = Field(default=100_000, ge=1)
    name: str = "selfalign-sft"


class EvaluateConfig(Section):
    """`selfalign evaluate`: pass@k on HumanEval(+) and MBPP(+) via the engine and the sandbox."""

    sets: list[Literal["humaneval", "humanevalplus", "mbpp", "mbppplus"]] = Field(
        default_factory=lambda: list(EVAL_SETS), min_length=1
    )
    benchmarks_dir: str = Field(default_factory=default_benchmarks_dir)
    # Set -> file: `package:pkg/path` inside an installed package, else under benchmarks_dir.
    files: dict[str, str] = Field(default_factory=lambda: dict(EVAL_FILES))
    limit: int | None = Field(default=None, ge=1)  # the first N tasks of each set (smoke runs)
    # Self-test: each task's reference solution is the completion; no engine is used.
    reference: bool = False
    greedy: bool = True  # one completion per task at temperature 0: pass@1
    samples: int = Field(default=0, ge=0)  # sampled completions per task for pass@k (0: none)
    temperature: float = Field(default=0.8, ge=0.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    k: list[int] = Field(default_factory=lambda: [1, 10, 100], min_length=1)
    max_tokens: int = Field(default=512, ge=1)
    # completion: a base model continues the task's code (bigcode harness style);
    # instruct: an instruction-tuned model gets the instruct format through
    # conf/prompts/sft_template.yaml, ending at the end of its code block.
    prompt_format: Literal["completion", "instruct"] = "completion"
    # The instruct format's wording and response openings: a file under
    # generation.prompts_dir (the packaged conf/prompts when null), or an absolute path.
    # eval_instruct.yaml: selfalign's layout; eval_instruct_published.yaml: the published one.
    instruct_template: str = "eval_instruct.yaml"
    # Whether prompts start with the BOS token, as training encodes them (one BOS id, when
    # the tokenizer has one). auto: yes for the instruct format on llm.engine vllm or
    # transformers, else the engine's default (the text as given; a server tokenizes it
    # its own way); true / false: always / never, refused where the engine cannot (openai).
    # A chat server's template places it (llm.api=chat): not applied there.
    add_bos: Literal["auto"] | bool = "auto"
    # MBPP and MBPP+ on EvalPlus's task set (the MBPP+ file's task ids: 378 in the default
    # v0.2.0 file, 399 in v0.1.0, which the published figures used);
    # test_split: MBPP's original tasks 11-510.
    mbpp_tasks: Literal["evalplus", "test_split"] = "evalplus"
    # None: per prompt format (udfs/evaluation STOP, INSTRUCT_STOP); none with llm.api=chat.
    stop: list[str] | None = None
    chunk_rows: int = Field(default=500, ge=1)  # tasks per committed chunk
    workers: int = Field(default=1, ge=1)  # sandbox runs at once per Spark task
    # EvalPlus time rules, in CPU seconds: each input may take max(min, factor x reference).
    min_time_limit: float = Field(default=1.0, gt=0.0)
    time_limit_factor: float = Field(default=4.0, gt=0.0)
    max_cpu_seconds: int = Field(default=240, ge=1)  # one program, ground truth included
    memory_bytes: int = Field(default=4 << 30, ge=1 << 20)  # RLIMIT_AS (EvalPlus: 4 GiB)

    @field_validator("files")
    @classmethod
    def _known_sets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(EVAL_SETS))
        if unknown:
            raise ValueError(f"unknown set {unknown[0]!r} (one of {', '.join(EVAL_SETS)})")
        return value

    @field_validator("k")
    @classmethod
    def _positive_k(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError("every k must be >= 1")
        return value


class TrainConfig(Section):
    """`selfalign train`: fine-tune base_model on the sft table (the published recipe)."""

    base_model: str = "bigcode/starcoder2-15b"  # a Hugging Face id or a local directory
    # The checkpoint (model + tokenizer, safetensors), its checkpoints/ and the staged
    # pairs (_data/): a path every training process can read and write (on Databricks
    # /Volumes/... or /dbfs/...; on a multi-node EMR cluster a shared mount).
    output_dir: str = "./checkpoints/selfalign-instruct"
    learning_rate: float = Field(default=1e-5, gt=0.0)
    epochs: float = Field(default=4.0, gt=0.0)
    # per_device_batch_size x gradient accumulation x processes >= effective_batch_size.
    effective_batch_size: int = Field(default=64, ge=1)
    per_device_batch_size: int = Field(default=1, ge=1)
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0)
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    optimizer: Literal["adafactor", "adamw_torch"] = "adafactor"
    max_length: int = Field(default=1280, ge=16)  # tokens; longer pairs are cut
    max_grad_norm: float = Field(default=0.0, ge=0.0)  # 0: no gradient clipping
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # every dropout of the model
    bf16: Literal["auto", "true", "false"] = "auto"  # bf16 autocast; auto: on GPUs that support it
    # The weights as loaded (published: bfloat16). auto: bfloat16 on GPUs that support
    # it, float32 on CPU.
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # auto: flash_attention_2 when the flash-attn package is installed on a GPU (as
    # published), else PyTorch's sdpa; asking for flash_attention_2 without it is an error.
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"
    # none: every process holds the whole model (DDP when num_processes > 1); fsdp: each
    # holds 1/num_processes of weights, gradients and optimizer state (full shard, one
    # FSDP unit per decoder layer, sharded checkpoints). The memory plan says which fits.
    sharding: Literal["none", "fsdp"] = "none"
    gradient_checkpointing: bool = False  # keep each layer's input only; recompute the rest
    # GiB per GPU for the memory plan's check; null: what the training process's GPU says.
    gpu_memory_gb: float | None = Field(default=None, gt=0)
    save_steps: int = Field(default=500, ge=1)  # a checkpoint every N optimizer steps
    logging_steps: int = Field(default=10, ge=1)
    max_steps: int = Field(default=-1, ge=-1)  # > 0: stop after N steps (smoke runs)
    seed: int = 42
    # TorchDistributor: processes in all (one per GPU); local_mode null = local when the
    # Spark master is local; use_gpu auto = when torch sees a GPU (local) or always (cluster).
    num_processes: int = Field(default=1, ge=1)
    local_mode: bool | None = None
    use_gpu: Literal["auto", "true", "false"] = "auto"
    # MLflow: an experiment name turns tracking on (the tracking URI from
    # mlflow_tracking_uri, else MLFLOW_TRACKING_URI; Databricks sets its own).
    mlflow_experiment: str | None = None
    mlflow_tracking_uri: str | None = None
    # The DAG's optional last step: `selfalign run` trains after export when true.
    in_dag: bool = False


class RunConfig(Section):
    seed: int = 42
    chunk_rows: int = Field(default=50_000, ge=1)
    # Runs an item may fail transiently (errors table) before it becomes a reject.
    max_attempts: int = Field(default=3, ge=1)
    # One writer per lake (jobs/core/lease.py): a run renews its lease every quarter of
    # this; a killed run's lease expires after it, so the next night is never blocked.
    lease_seconds: float = Field(default=600, ge=2)


class PipelineConfig(Section):
    lake: LakeConfig = Field(default_factory=LakeConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    typecheck: TypecheckConfig = Field(default_factory=TypecheckConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    execute: ExecuteConfig = Field(default_factory=ExecuteConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunConfig = Field(default_factory=RunConfig)

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
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config: override key '{dotted}': '{part}' is not a section")
        node = child
    try:
        node[parts[-1]] = _load_yaml(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"config: override '{assignment}': the value is {problem} "
                          "(quote it to pass a plain string)") from None


def parse_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    for assignment in overrides:
        apply_override(raw, assignment)
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
