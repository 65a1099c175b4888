"""export: the `sft` table as files an SFT trainer reads directly, with a dataset card.

`selfalign export --format jsonl|parquet --out DIR` writes into DIR:

  jsonl    train.jsonl, validation.jsonl: one JSON object per line, `instruction` and
           `response` first, then the lineage fields (EXPORT_FIELDS)
  parquet  train-00000.parquet, ... and validation-00000.parquet, ...: the same
           columns, `ExportConfig.rows_per_file` rows per file
  README.md          dataset card: counts per split, sources and licenses, the
                     generation settings (models, prompt versions, sampling), in the
                     words of conf/templates/dataset_card.md
  dataset_info.json  the same numbers, machine-readable, and the split rule

Split: an instruction goes to validation when the first 8 bytes of
sha256(instruction_id), read as a fraction of 2^64, fall below
`export.validation_fraction` (default 0.02). Plain Python on the id, no Spark
randomness: the same instruction lands in the same split in every export, and a
grown table only adds rows to either split.

How: the driver streams `sft` sorted by instruction_id (toLocalIterator, one
partition in memory at a time) and writes the files itself, so their names are
fixed (Spark's part-<uuid> names are not), rows are in a fixed order, and the same
table gives byte-identical files. The final table is small (the published run kept
50k pairs, ~100 MB of text). DIR is a local path, a Unity Catalog volume (/Volumes/...)
or an object store URI (s3://, s3a://, gs://, abfss://): jobs/core/outdir.py. Earlier
export files in DIR (of either format) are removed once the new ones are in place, so
a trainer never globs a stale shard after the export; locally each file is written under a temporary name and renamed when
complete, on a store each file is one all-or-nothing upload; dataset_info.json last.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from jobs.core.outdir import OutDir
from jobs.core.recipe import recipe
from jobs.core.sections import ExportConfig
from jobs.core.stage import Step
from schemas.outcome import Source
from udfs.splits import split_of

if TYPE_CHECKING:
    from jobs.core.stage import StageSummary

log = logging.getLogger("selfalign")

FORMATS = ("jsonl", "parquet")
SPLITS = ("train", "validation")
# The trainer's fields first, then lineage: where the seed came from and what generated it.
EXPORT_FIELDS = (
    "instruction", "response", "instruction_id", "response_id", "seed_id",
    "repo", "path", "hexsha", "licenses", "concepts", "category", "difficulty",
    "model", "prompt_version", "sampling", "instruction_model", "instruction_prompt_version",
    "sanitizing",
)
LIST_FIELDS = frozenset({"licenses", "concepts"})
PARQUET_ROW_GROUP = 5000
# The card's wording; shipped in the wheel as package data of `conf`, like conf/prompts.
CARD_TEMPLATE = Path(__file__).resolve().parents[2] / "conf" / "templates" / "dataset_card.md"
TOP = 20  # repos listed by name in the card
_STALE = ("train*.jsonl", "validation*.jsonl", "train-*.parquet", "validation-*.parquet",
          "README.md", "dataset_info.json")


# --- plain functions (unit-tested without Spark) -------------------------------------------

def export_record(row: dict[str, Any]) -> dict[str, Any]:
    """One exported example: EXPORT_FIELDS in order, lists as lists."""
    record = {}
    for name in EXPORT_FIELDS:
        value = row.get(name)
        record[name] = list(value) if name in LIST_FIELDS and value is not None else value
    return record


@dataclass
class Stats:
    """What the card says about the exported rows, counted while they stream by."""

    splits: Counter = field(default_factory=Counter)
    licenses: Counter = field(default_factory=Counter)
    repos: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    instruction_models: Counter = field(default_factory=Counter)
    prompt_versions: Counter = field(default_factory=Counter)
    instruction_prompt_versions: Counter = field(default_factory=Counter)
    sampling: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    difficulties: Counter = field(default_factory=Counter)

    def add(self, record: dict[str, Any], split: str) -> None:
        self.splits[split] += 1
        for name in record.get("licenses") or ["unknown"]:
            self.licenses[name] += 1
        self.repos[record.get("repo") or "unknown"] += 1
        self.models[record.get("model") or "unknown"] += 1
        self.instruction_models[record.get("instruction_model") or "unknown"] += 1
        self.prompt_versions[record.get("prompt_version") or "unknown"] += 1
        self.instruction_prompt_versions[record.get("instruction_prompt_version") or "unknown"] += 1
        self.sampling[record.get("sampling") or "unknown"] += 1
        self.categories[record.get("category") or "unknown"] += 1
        self.difficulties[record.get("difficulty") or "unknown"] += 1

    @property
    def total(self) -> int:
        return sum(self.splits.values())


def _ranked(counts: Counter, limit: int | None = None) -> dict[str, int]:
    """Most common first, ties by name: a stable order for a deterministic card."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dict(ordered[:limit] if limit else ordered)


def _sampling_value(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def dataset_info(stats: Stats, cfg: ExportConfig, fmt: str, files: dict[str, list[str]],
                 source: dict[str, Any], recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """dataset_info.json: counts, files, split rule, sources and generation settings."""
    return {
        "name": cfg.name,
        "format": fmt,
        "fields": list(EXPORT_FIELDS),
        "num_examples": stats.total,
        "splits": {split: {"num_examples": stats.splits.get(split, 0), "files": files.get(split, [])}
                   for split in SPLITS},
        "split_rule": {
            "validation_fraction": cfg.validation_fraction,
            "rule": "validation if int.from_bytes(sha256(instruction_id)[:8], 'big') / 2**64 "
                    "< validation_fraction",
        },
        "sources": {"repos": len(stats.repos), "top_repos": _ranked(stats.repos, TOP),
                    "licenses": _ranked(stats.licenses)},
        "generation": {
            "response_models": _ranked(stats.models),
            "response_prompt_versions": _ranked(stats.prompt_versions),
            "instruction_models": _ranked(stats.instruction_models),
            "instruction_prompt_versions": _ranked(stats.instruction_prompt_versions),
            "sampling": [{"params": _sampling_value(text), "examples": n}
                         for text, n in _ranked(stats.sampling).items()],
        },
        "categories": _ranked(stats.categories),
        "difficulties": _ranked(stats.difficulties),
        "source": source,
        "recipe": recipe or {},
    }


def _table(header: tuple[str, str], counts: dict[str, int]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | ---: |"]
    lines += [f"| {_cell(name)} | {n:,} |" for name, n in counts.items()]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@functools.lru_cache(maxsize=1)
def _card_template() -> Template:
    # string.Template, not str.format: the card's values hold JSON braces, and `$name`
    # slots are substituted in one pass, so a value is never read as a slot.
    return Template(CARD_TEMPLATE.read_text(encoding="utf-8"))


def card_values(info: dict[str, Any]) -> dict[str, str]:
    """The slots of conf/templates/dataset_card.md, as text, from `info`."""
    splits, sources, generation = info["splits"], info["sources"], info["generation"]
    pattern = {"jsonl": "{split}.jsonl", "parquet": "{split}-*.parquet"}[info["format"]]
    sampling = {json.dumps(s["params"], sort_keys=True): s["examples"] for s in generation["sampling"]}
    return {
        "name": str(info["name"]),
        **{f"{split}_files": pattern.format(split=split) for split in SPLITS},
        "splits_table": _table(("split", "examples"), {s: splits[s]["num_examples"] for s in SPLITS}),
        "total": f"{info['num_examples']:,}",
        "files": ", ".join(f"`{name}`" for s in SPLITS for name in splits[s]["files"]),
        "split_rule": info["split_rule"]["rule"],
        "validation_fraction": str(info["split_rule"]["validation_fraction"]),
        "lineage_fields": ", ".join(f"`{f}`" for f in info["fields"][2:]),
        "repo_count": f"{sources['repos']:,}",
        "top_repos_table": _table(("repository", "examples"), sources["top_repos"]),
        "licenses_table": _table(("license", "examples"), sources["licenses"]),
        "response_models_table": _table(("response model", "examples"), generation["response_models"]),
        "response_prompt_versions_table": _table(("response prompt version", "examples"),
                                                 generation["response_prompt_versions"]),
        "instruction_models_table": _table(("instruction model", "examples"),
                                           generation["instruction_models"]),
        "instruction_prompt_versions_table": _table(("instruction prompt version", "examples"),
                                                    generation["instruction_prompt_versions"]),
        "sampling_table": _table(("parameters", "examples"), sampling),
        "categories_table": _table(("category", "examples"), info["categories"]),
        "difficulties_table": _table(("difficulty", "examples"), info["difficulties"]),
        "recipe_section": _recipe_section(info.get("recipe") or {}),
    }


def dataset_card(info: dict[str, Any]) -> str:
    """README.md: Hugging Face front matter (so `load_dataset(DIR)` finds the splits),
    then the counts, sources, licenses and generation settings of `info`, in the words
    of conf/templates/dataset_card.md."""
    return _card_template().substitute(card_values(info))


def _recipe_section(recipe: dict[str, Any]) -> str:
    """The card's last section, or nothing without a recipe. Built here, not in the
    template, because whether it exists and which of its two forms it takes depend on
    the recipe; it starts with the blank line that separates it from the tasks."""
    if not recipe:
        return ""
    lines = ["", "", "## Recipe", ""]
    changed = recipe.get("deviations") or []
    if not changed:
        return "\n".join([*lines, f"Made with the published StarCoder2-Instruct settings ({recipe['reference']})."])
    lines += [f"Made with the published StarCoder2-Instruct settings ({recipe['reference']}) except:", "",
              "| setting | published | used |", "| --- | --- | --- |"]
    lines += [f"| `{d['key']}` | {_cell(json.dumps(d['published']))} | {_cell(json.dumps(d['used']))} |"
              for d in changed]
    return "\n".join(lines)


# --- writers -------------------------------------------------------------------------------

class JsonlWriter:
    """<split>.jsonl, one UTF-8 JSON object per line."""

    def __init__(self, out: OutDir, split: str) -> None:
        self.name = f"{split}.jsonl"
        self.handle = out.open_text(self.name)

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> list[str]:
        self.handle.close()
        return [self.name]


def parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(name, pa.list_(pa.string()) if name in LIST_FIELDS else pa.string())
                      for name in EXPORT_FIELDS])


class ParquetWriter:
    """<split>-00000.parquet, ...: `rows_per_file` rows each, row groups of PARQUET_ROW_GROUP."""

    def __init__(self, out: OutDir, split: str, rows_per_file: int) -> None:
        self.out, self.split, self.rows_per_file = out, split, rows_per_file
        self.schema = parquet_schema()
        self.buffer: list[dict[str, Any]] = []
        self.in_file = 0
        self.writer: Any = None
        self.sink: Any = None
        self.files: list[str] = []

    def _open(self) -> None:
        import pyarrow.parquet as pq

        self.files.append(f"{self.split}-{len(self.files):05d}.parquet")
        self.sink = self.out.open_binary(self.files[-1])
        self.writer = pq.ParquetWriter(self.sink, self.schema, compression="zstd")
        self.in_file = 0

    def _close_file(self) -> None:
        self.writer.close()
        self.sink.close()  # the writer does not own a stream it was given
        self.writer = None

    def _flush(self) -> None:
        import pyarrow as pa

        if self.writer is None:
            self._open()
        assert self.writer is not None
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is not None and self.in_file >= self.rows_per_file:
            self._flush()
            self._close_file()
        if self.writer is None:
            self._open()
        self.buffer.append(record)
        self.in_file += 1
        if len(self.buffer) >= PARQUET_ROW_GROUP:
            self._flush()

    def close(self) -> list[str]:
        self._flush()  # an empty split still gets one file with the schema
        self._close_file()
        return self.files


def write_dataset(rows: Iterable[dict[str, Any]], out: str | Path | OutDir, fmt: str,
                  cfg: ExportConfig, source: dict[str, Any] | None = None,
                  recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `rows` (sft rows, sorted by instruction_id) as the dataset in `out` (a local
    path or a store URI: jobs/core/outdir.py); its info."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    target = out if isinstance(out, OutDir) else OutDir(str(out))
    target.prepare()
    writers = {split: JsonlWriter(target, split) if fmt == "jsonl"
               else ParquetWriter(target, split, cfg.rows_per_file) for split in SPLITS}
    stats = Stats()
    for row in rows:
        record = export_record(row)
        split = split_of(record["instruction_id"], cfg.validation_fraction)
        writers[split].write(record)
        stats.add(record, split)
    files: dict[str, list[str]] = {}
    for split, writer in writers.items():
        files[split] = writer.close()
        for name in files[split]:
            target.publish(name)
    target.remove_stale(_STALE, keep=[name for names in files.values() for name in names])
    info = dataset_info(stats, cfg, fmt, files, source or {}, recipe)
    # The card and the info last: a reader that finds dataset_info.json finds every split.
    target.write_text("README.md", dataset_card(info))
    target.write_text("dataset_info.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info


# --- Spark side ------------------------------------------------------------------------------

def sft_rows(ctx: Any) -> Iterator[dict[str, Any]]:
    """The `sft` table sorted by instruction_id, streamed to the driver a partition at a time."""
    from pyspark.sql import functions as F

    from schemas import SFT

    table = ctx.lake.read(SFT).select(*[c for c in EXPORT_FIELDS if c in SFT.columns])
    for row in table.orderBy(F.col("instruction_id")).toLocalIterator(prefetchPartitions=True):
        yield row.asDict(recursive=True)


def _source(ctx: Any) -> dict[str, Any]:
    from schemas import SFT

    version = ctx.lake.history(SFT, limit=1).select("version").first()
    return {"table": "sft", "delta_version": version["version"] if version else None}


def export_dataset(ctx: Any, fmt: str, out: str | Path) -> dict[str, Any]:
    """`selfalign export`: write the dataset and its card; returns dataset_info."""
    target = OutDir(str(out))
    from schemas import SFT

    ctx.lake.ensure(SFT)
    info = write_dataset(sft_rows(ctx), target, fmt, ctx.cfg.export, _source(ctx), recipe(ctx.cfg))
    log.info("[export] %s: %s", target, ", ".join(
        f"{split} {info['splits'][split]['num_examples']}" for split in SPLITS))
    return info


def export_step(ctx: Any, summary: StageSummary) -> None:
    """The DAG's last step: export.format files of the whole sft table into export.out."""
    info = export_dataset(ctx, ctx.cfg.export.format, ctx.cfg.export.out)
    summary.rows_in = summary.rows_out = sum(s["num_examples"] for s in info["splits"].values())


STEP = Step(name=Source.EXPORT, action=export_step)
