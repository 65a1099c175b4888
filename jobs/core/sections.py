"""The config's sections: every key, its default, type and bounds, one class per section
(jobs/core/config.py assembles them into PipelineConfig and loads the YAML).

Values few users need are not keys: `ClassVar` constants of their section, or derived
(seeds from run.seed, MinHash permutations from lsh, benchmark files from benchmarks),
handed over by PipelineConfig as private attributes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from udfs.benchmarks import BenchmarkSpec
from udfs.evaluation import DEFAULT_FILES as EVAL_FILES
from udfs.evaluation import SETS as EVAL_SETS
from udfs.extract import KNOWN_RULES
from udfs.sandbox.limits import RANGES as LIMIT_RANGES
from udfs.sandbox.limits import allowed_range

# run.seed 42 gives every purpose the seed it had when each was a key of its own.
SEED_OFFSETS = {"sample": -42, "dedup": -41, "select": -41, "llm": -42, "train": 0}


def derived_seed(run_seed: int, purpose: str) -> int:
    """The seed of one purpose (sample, dedup, select, llm, train), fixed by run.seed."""
    return (run_seed + SEED_OFFSETS[purpose]) % 2**32


class Section(BaseModel):
    # Unknown keys are typos until proven otherwise; strict types stop "0.5" strings.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Seeded(Section):
    """A section whose seed derives from run.seed (set by PipelineConfig)."""

    _purpose: ClassVar[str]
    _run_seed: int = PrivateAttr(42)

    @property
    def seed(self) -> int:
        return derived_seed(self._run_seed, self._purpose)


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
    shuffle_partitions: int = Field(default=4, ge=1)
    # Project-local Ivy cache: the Delta jars are fetched once, later runs start offline.
    ivy_dir: str = "./.ivy"
    # The Delta jars' Maven coordinate; null: the one matching the installed delta-spark
    # and pyspark (jobs.core.session.delta_package), so the two cannot drift apart.
    delta_package: str | None = None
    # Spark properties for local mode, over jobs/core/session.py's (app name "selfalign",
    # UI off, 500 rows per Arrow batch, ...).
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


class SampleConfig(Seeded):
    _purpose = "sample"
    max_file_bytes: ClassVar[int] = 100_000
    out: str = "data/stack_sample/stack_sample.parquet"
    files: int = Field(default=2000, ge=1)


class ExtractConfig(Section):
    max_file_bytes: ClassVar[int] = 1_000_000
    # New input files up to this many are read by name (no other file is opened); more
    # (a first run, a backfill) are read through input.path and kept by file name.
    read_by_name_max_files: int = Field(default=10_000, ge=1)
    max_lines: int = Field(default=150, ge=1)
    rules: list[str] = Field(default_factory=lambda: list(KNOWN_RULES))
    markers: list[str] = Field(default_factory=lambda: ["TODO", "FIXME", "XXX", "bug"])
    banned_imports: list[str] = Field(default_factory=lambda: [
        "argparse", "os", "subprocess", "sys", "setuptools", "distutils", "matplotlib", "seaborn"])
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


def default_benchmarks_dir() -> str:
    """Where benchmark files live unless a config says: $SELFALIGN_BENCHMARKS_DIR, else the
    user's cache ($XDG_CACHE_HOME or ~/.cache)/selfalign/benchmarks. The first run that
    needs them downloads them there (sha256-checked)."""
    explicit = os.environ.get("SELFALIGN_BENCHMARKS_DIR")
    if explicit:
        return explicit
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "selfalign" / "benchmarks")


# The reader of each set's file (udfs/benchmarks.py FORMATS).
BENCHMARK_FORMATS = {"humaneval": "humaneval", "humanevalplus": "evalplus", "mbpp": "mbpp",
                     "mbppplus": "evalplus"}


def _known_sets(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(EVAL_SETS))
    if unknown:
        raise ValueError(f"unknown set {unknown[0]!r} (one of {', '.join(EVAL_SETS)})")
    return value


class BenchmarksConfig(Section):
    """The benchmark files: decontaminate checks seeds against every one, evaluate scores
    its sets on them, `selfalign benchmarks download` fetches them (sha256-checked)."""

    dir: str = Field(default_factory=default_benchmarks_dir)
    # Set -> file: `package:pkg/path` inside an installed package, else under dir.
    files: dict[str, str] = Field(default_factory=lambda: {
        name: EVAL_FILES[name] for name in ("humaneval", "mbpp", "humanevalplus", "mbppplus")})
    _files = field_validator("files")(_known_sets)


class WithBenchmarks(Section):
    """A section that reads the benchmarks section (set by PipelineConfig)."""

    _benchmarks: BenchmarksConfig = PrivateAttr(default_factory=BenchmarksConfig)

    @property
    def benchmarks_dir(self) -> str:
        return self._benchmarks.dir


class DecontaminateConfig(WithBenchmarks):
    # HumanEval-style canonical bodies that are not contamination (compared after
    # normalization). Default none; published: three short bodies (benchmark_data.py:11-13).
    exempt_bodies: list[str] = Field(default_factory=list)

    @property
    def benchmarks(self) -> list[BenchmarkSpec]:
        return [BenchmarkSpec(name, path, BENCHMARK_FORMATS[name])
                for name, path in self._benchmarks.files.items()]


class TypecheckConfig(Section):
    python_version: ClassVar[str] = "3.11"
    batch_size: ClassVar[int] = 1000  # files per checker process
    timeout_seconds: int = Field(default=600, ge=1)  # one checker process
    # pyright's mode and its verdict on an import it cannot resolve (udfs/typecheck.py);
    # published: pyright's defaults, standard and error (high_quality_subset.py).
    type_checking_mode: Literal["basic", "standard"] = "basic"
    report_missing_imports: Literal["none", "error"] = "none"
    # The tool (udfs/checkers/): pyright as published; basedpyright, a pyright fork that
    # gives the same verdicts; ty, much faster, agreeing on most (README, "Type checkers").
    checker: Literal["pyright", "basedpyright", "ty"] = "pyright"


class LSHConfig(Section):
    """MinHash-LSH shared by dedup (functions) and select (instructions, half the
    permutations: short prose). Shingle size and threshold are each stage's."""

    max_iterations: ClassVar[int] = 50  # of connected components
    num_perm: int = Field(default=256, ge=32)


class WithLSH(Seeded):
    _lsh: LSHConfig = PrivateAttr(default_factory=LSHConfig)
    max_iterations: ClassVar[int] = LSHConfig.max_iterations


class DedupConfig(WithLSH):
    _purpose = "dedup"
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    shingle_size: int = Field(default=5, ge=1)
    # Every candidate is confirmed on the exact Jaccard of the two shingle sets (exact),
    # on the signatures' estimate (estimate), or not at all (none, as published:
    # text-dedup unions every band collision). The bands follow: with a confirmation,
    # tuned for 0.8 x threshold leaning to recall (weights 0.2/0.8: 64x4 at 0.4/256); with
    # none, for threshold itself with equal weights (published: 41x6 at 0.5/250).
    verify: Literal["exact", "estimate", "none"] = "exact"
    # words: lower-cased \w+ tokens. nonalpha_split (text-dedup's, as published):
    # re.split(r"\W") of the lower-cased text, empty tokens kept, and a text of fewer than
    # 5 tokens has no shingles and takes no part. Changing it invalidates `minhashes`.
    tokenizer: Literal["words", "nonalpha_split"] = "words"

    @property
    def num_perm(self) -> int:
        return self._lsh.num_perm

    @property
    def fp_weight(self) -> float:
        return 0.5 if self.verify == "none" else 0.2

    @property
    def fn_weight(self) -> float:
        return 1.0 - self.fp_weight

    def bands_threshold(self) -> float:
        """The similarity the LSH bands are tuned for."""
        return self.threshold if self.verify == "none" else 0.8 * self.threshold


_ENGINE_RE = re.compile(r"none|openai|vllm|transformers|python:[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class LLMConfig(Seeded):
    """The generation engine (udfs/llm). Engine-relevant: any change builds a new engine."""

    _purpose = "llm"
    # "none" (generation stages refuse to run), "openai" (an OpenAI-compatible server),
    # "vllm" (in-process on a GPU executor) or
    # "python:<module>:<Class>" (a class constructed with udfs.llm.EngineSettings copied
    # from this section; how tests plug in their engine on executors).
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
    concurrency: int = Field(default=16, ge=1)  # requests in flight per Spark task
    # --- vllm ---
    dtype: str = "bfloat16"
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = Field(default=None, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not _ENGINE_RE.fullmatch(value):
            raise ValueError("expected none, openai, vllm, transformers or python:<module>:<Class>")
        return value


class SandboxConfig(Section):
    """How generated programs run (udfs/sandbox); the limits hold per program, those not
    here are udfs/sandbox/limits.py's."""

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
    # Programs run at once per execute task (threads waiting on sandbox processes);
    # None: two per executor core, shared by the tasks it runs at once (jobs/stages/execute.py).
    parallelism: int | None = Field(default=None, ge=1, le=1024)

    @field_validator("cpu_seconds", "wall_seconds", "memory_bytes", mode="before")
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
    top_p: ClassVar[float] = 1.0
    if TYPE_CHECKING:
        n: int  # samples per prompt: a key of judge and respond, 1 for concepts and instruct
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=512, ge=1)


# One class per stage, so overriding one key (generation.respond.n=3) keeps the
# stage's other defaults instead of falling back to the generic ones.
class JudgeSampling(SamplingConfig):
    # Samples per function; over several (temperature > 0), Yes wins only by majority.
    n: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=4, ge=1)
    # How an answer is read (udfs/parse.py parse_judge): first_word, its first word is
    # Yes or No, else unparseable; count (published), Yes when "yes" occurs more often
    # than "no" in the lower-cased answer. The prompt: a file under prompts_dir.
    decision: Literal["first_word", "count"] = "first_word"
    template: str = "judge.yaml"


# The published recipe samples concepts, instructions and responses at temperature 0.7
# with top_p 1.0 and up to 1536 new tokens; an output cut by that cap is rejected.
class PublishedSampling(SamplingConfig):
    n: ClassVar[int] = 1
    temperature: float = Field(default=0.7, ge=0.0)
    max_tokens: int = Field(default=1536, ge=1)


class RespondSampling(SamplingConfig):
    n: int = Field(default=10, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)
    max_tokens: int = Field(default=1536, ge=1)


class GenerationConfig(Section):
    """The LLM stages: prompts, sampling per stage, chunking and GPU placement."""

    prompts_dir: str | None = None  # None: the packaged conf/prompts
    # Rows per committed chunk of the model-bound stages: a crash loses at most one chunk
    # (evaluate: a quarter of it, in tasks).
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

    @property
    def evaluate_chunk_rows(self) -> int:
        """Tasks per committed chunk of evaluate: a quarter of chunk_rows (500)."""
        return max(1, self.chunk_rows // 4)


class SanitizeConfig(Section):
    """The published sanitizing of each SFT pair (udfs/sanitize.py); off: the cleaned
    response as chosen, with its reasoning, explanation and tests."""

    drop_probability: ClassVar[float] = 0.5  # reasoning, explanation: each dropped
    assert_probability: ClassVar[float] = 0.5  # asserts moved into the instruction
    max_asserts: ClassVar[int] = 5
    enabled: bool = True
    # selfalign: placeholders in the code make select choose another response, every
    # comment goes, top-level asserts move. published: the published rules one by one
    # (udfs/sanitize.py lists the differences), its layout check included.
    style: Literal["selfalign", "published"] = "selfalign"


class SelectConfig(WithLSH):
    """Near-duplicate instructions (MinHash-LSH over word shingles, as in dedup), then
    the published sanitizing of the kept pairs."""

    _purpose = "select"
    # Instructions are short prose: 3-word shingles, and a higher bar than code dedup's
    # 0.5, since two tasks on one seed share much wording yet ask different things.
    instruction_threshold: float = Field(default=0.7, gt=0.0, lt=1.0)
    shingle_size: int = Field(default=3, ge=1)
    # Near-duplicate instructions dropped (selfcodealign's step; the StarCoder2 pipeline
    # has none).
    near_duplicates: bool = True
    # per_seed: of one seed's instructions, at most one per set of top-level function
    # names. global (published): over all pairs ever kept, one per instruction, per
    # response and per list of every function name the first code block defines, first
    # come in a seeded shuffle; code that does not parse drops the pair (udfs/diversify.py).
    diversify_function_names: Literal["off", "per_seed", "global"] = "per_seed"
    sanitize: SanitizeConfig = Field(default_factory=SanitizeConfig)

    @property
    def num_perm(self) -> int:
        return self._lsh.num_perm // 2

    @field_validator("diversify_function_names", mode="before")
    @classmethod
    def _was_a_switch(cls, value: Any) -> Any:
        # Before "global" existed the key was true/false.
        return {True: "per_seed", False: "off"}.get(value, value) if isinstance(value, bool) else value


class ExportConfig(Section):
    rows_per_file: ClassVar[int] = 100_000  # parquet: train-00000.parquet, ...
    name: ClassVar[str] = "selfalign-sft"  # the dataset card's name
    # The `export` step of `selfalign run` (the `selfalign export` command takes its own).
    format: Literal["jsonl", "parquet"] = "jsonl"
    out: str = "./export"
    # Share of instructions in the validation split, by a hash of the instruction id.
    validation_fraction: float = Field(default=0.02, ge=0.0, lt=1.0)


class EvaluateConfig(WithBenchmarks):
    """`selfalign evaluate`: pass@k on HumanEval(+) and MBPP(+) via the engine and the sandbox."""

    # Sampled decoding as EvalPlus and the bigcode harness sample.
    temperature: ClassVar[float] = 0.8
    top_p: ClassVar[float] = 0.95
    workers: ClassVar[int] = 1  # sandbox runs at once per Spark task
    mbpp_tasks: ClassVar[str] = "evalplus"  # MBPP(+) on the MBPP+ file's task ids
    # EvalPlus's time rules, in CPU seconds: each input may take max(min, factor x
    # reference); its 4 GiB address space (RLIMIT_AS); ours: 240 s for one program.
    min_time_limit: ClassVar[float] = 1.0
    time_limit_factor: ClassVar[float] = 4.0
    max_cpu_seconds: ClassVar[int] = 240
    memory_bytes: ClassVar[int] = 4 << 30

    sets: list[Literal["humaneval", "humanevalplus", "mbpp", "mbppplus"]] = Field(
        default_factory=lambda: list(EVAL_SETS), min_length=1
    )
    # Sets scored on another file than benchmarks.files' (published: MBPP+ v0.1.0, 399
    # tasks, which the published figures used; benchmarks.files has v0.2.0, 378).
    files: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1)  # the first N tasks of each set (smoke runs)
    # Self-test: each task's reference solution is the completion; no engine is used.
    reference: bool = False
    samples: int = Field(default=0, ge=0)  # sampled completions per task for pass@k (0: none)
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

    _files = field_validator("files")(_known_sets)

    @property
    def benchmark_files(self) -> dict[str, str]:
        """Set -> file of every set: benchmarks.files, with this section's files over it."""
        return {**self._benchmarks.files, **self.files}

    @field_validator("k")
    @classmethod
    def _positive_k(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError("every k must be >= 1")
        return value


class TrainConfig(Seeded):
    """`selfalign train`: fine-tune base_model on the sft table (the published recipe)."""

    _purpose = "train"
    # The published recipe's constants (src/star_align/train.py and its README script).
    warmup_ratio: ClassVar[float] = 0.05
    scheduler: ClassVar[str] = "linear"
    optimizer: ClassVar[str] = "adafactor"
    max_grad_norm: ClassVar[float] = 0.0  # no gradient clipping
    dropout: ClassVar[float] = 0.0  # every dropout of the model
    logging_steps: ClassVar[int] = 10
    max_length: ClassVar[int] = 1280  # tokens; longer pairs are cut
    bf16: ClassVar[str] = "auto"  # bf16 autocast on GPUs that support it
    use_gpu: ClassVar[str] = "auto"  # when torch sees a GPU (local) or always (cluster)
    # flash_attention_2 when the flash-attn package is installed on a GPU (as
    # published), else PyTorch's sdpa.
    attn_implementation: ClassVar[str] = "auto"

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
    # The weights as loaded (published: bfloat16). auto: bfloat16 on GPUs that support
    # it, float32 on CPU.
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # none: every process holds the whole model (DDP when num_processes > 1); fsdp: each
    # holds 1/num_processes of weights, gradients and optimizer state (full shard, one
    # FSDP unit per decoder layer, sharded checkpoints). The memory plan says which fits.
    sharding: Literal["none", "fsdp"] = "none"
    gradient_checkpointing: bool = False  # keep each layer's input only; recompute the rest
    # GiB per GPU for the memory plan's check; null: what the training process's GPU says.
    gpu_memory_gb: float | None = Field(default=None, gt=0)
    save_steps: int = Field(default=500, ge=1)  # a checkpoint every N optimizer steps
    max_steps: int = Field(default=-1, ge=-1)  # > 0: stop after N steps (smoke runs)
    # TorchDistributor: processes in all (one per GPU); local_mode null = local when the
    # Spark master is local.
    num_processes: int = Field(default=1, ge=1)
    local_mode: bool | None = None
    # MLflow: an experiment name turns tracking on (the tracking URI from
    # mlflow_tracking_uri, else MLFLOW_TRACKING_URI; Databricks sets its own).
    mlflow_experiment: str | None = None
    mlflow_tracking_uri: str | None = None
    # The DAG's optional last step: `selfalign run` trains after export when true.
    in_dag: bool = False


class CostConfig(Section):
    """Prices for the estimated cost in `runs`, `status`, the report and `plan` (any
    currency; null: not counted). GPU-seconds are those the tasks held (vLLM in executors,
    a model on a GPU); a remote endpoint (llm.engine openai) is priced by its tokens."""

    gpu_hour: float | None = Field(default=None, ge=0)
    cpu_hour: float | None = Field(default=None, ge=0)  # per sandbox CPU-hour
    input_token_million: float | None = Field(default=None, ge=0)  # a hosted endpoint's prices
    output_token_million: float | None = Field(default=None, ge=0)


class RunConfig(Section):
    seed: int = 42  # every seed derives from it (derived_seed)
    # Input rows per committed chunk of the Spark-bound stages (extract, the seed filters);
    # execute commits a tenth of it, in responses.
    chunk_rows: int = Field(default=50_000, ge=1)
    # Runs an item may fail transiently (errors table) before it becomes a reject.
    max_attempts: int = Field(default=3, ge=1)
    # One writer per lake (jobs/core/lease.py): a run renews its lease every quarter of
    # this; a killed run's lease expires after it, so the next night is never blocked.
    lease_seconds: float = Field(default=600, ge=2)

    @property
    def execute_chunk_rows(self) -> int:
        """Responses per committed chunk of execute: a tenth of chunk_rows (5,000)."""
        return max(1, self.chunk_rows // 10)
