"""The export's plain parts: the split rule, records, writers and the dataset card (no Spark)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar

import pyarrow.parquet as pq
import pytest

from jobs.core.config import load_config
from jobs.core.recipe import recipe
from jobs.core.sections import ExportConfig
from jobs.stages.export import (
    EXPORT_FIELDS,
    Stats,
    dataset_card,
    dataset_info,
    export_record,
    split_of,
    write_dataset,
)


def rows(n: int) -> list[dict]:
    out = []
    for k in range(n):
        iid = hashlib.sha256(f"instruction {k}".encode()).hexdigest()
        out.append({
            "instruction_id": iid, "instruction": f"Task {k}", "response": f"Answer {k}\n```python\nx = {k}\n```",
            "response_id": f"r{k}", "seed_id": f"s{k}", "repo": f"acme/r{k % 3}", "path": "a.py",
            "hexsha": "0" * 40, "licenses": ("MIT",) if k % 2 else ("MIT", "Apache-2.0"),
            "concepts": ["loops"], "category": "function", "difficulty": "easy",
            "model": "starcoder2-15b", "prompt_version": "respond-v1",
            "sampling": json.dumps({"n": 10, "temperature": 0.7}), "instruction_model": "starcoder2-15b",
            "instruction_prompt_version": "instruct-v1", "run_id": "not exported",
        })
    return sorted(out, key=lambda r: r["instruction_id"])


def test_split_is_a_fixed_function_of_the_id_near_the_fraction():
    ids = [hashlib.sha256(str(k).encode()).hexdigest() for k in range(20_000)]
    validation = [i for i in ids if split_of(i, 0.02) == "validation"]
    assert 300 < len(validation) < 500  # 2% of 20,000 = 400
    assert [split_of(i, 0.02) for i in ids[:50]] == [split_of(i, 0.02) for i in ids[:50]]
    assert {split_of(i, 0.0) for i in ids} == {"train"}
    # Growing the fraction only moves ids into validation, never out of it.
    assert set(validation) <= {i for i in ids if split_of(i, 0.05) == "validation"}


def test_record_has_the_trainer_fields_first_and_no_internal_ones():
    record = export_record(rows(1)[0])
    assert tuple(record) == EXPORT_FIELDS and list(record)[:2] == ["instruction", "response"]
    assert record["licenses"] == ["MIT", "Apache-2.0"] and "run_id" not in record



def small_files(validation_fraction: float, rows: int) -> ExportConfig:
    class Small(ExportConfig):  # rows_per_file is a constant of the config
        rows_per_file: ClassVar[int] = rows

    return Small(validation_fraction=validation_fraction)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_written_files_load_and_are_identical_when_written_again(tmp_path: Path, fmt: str):
    cfg = small_files(0.25, 7)
    data = rows(40)
    info = write_dataset(iter(data), tmp_path / "a", fmt, cfg, {"delta_version": 3})
    write_dataset(iter(data), tmp_path / "b", fmt, cfg, {"delta_version": 3})
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    loaded: dict[str, list[dict]] = {}
    for split in ("train", "validation"):
        files = info["splits"][split]["files"]
        if fmt == "jsonl":
            assert files == [f"{split}.jsonl"]
            text = (tmp_path / "a" / files[0]).read_text(encoding="utf-8")
            loaded[split] = [json.loads(line) for line in text.splitlines()]
        else:
            assert files[0] == f"{split}-00000.parquet"
            loaded[split] = [r for f in files for r in pq.read_table(tmp_path / "a" / f).to_pylist()]
            assert all(pq.read_metadata(tmp_path / "a" / f).num_rows <= 7 for f in files)
        assert len(loaded[split]) == info["splits"][split]["num_examples"]
        assert all(split_of(r["instruction_id"], 0.25) == split for r in loaded[split])
    assert sum(len(v) for v in loaded.values()) == 40 and loaded["validation"]
    assert [r["instruction_id"] for r in loaded["train"]] == sorted(r["instruction_id"] for r in loaded["train"])


def test_stale_files_of_an_earlier_export_are_removed(tmp_path: Path):
    cfg = small_files(0.0, 5)
    write_dataset(iter(rows(20)), tmp_path, "parquet", cfg)
    assert (tmp_path / "train-00003.parquet").exists()
    (tmp_path / "notes.txt").write_text("mine")
    info = write_dataset(iter(rows(6)), tmp_path, "parquet", cfg)
    assert info["splits"]["train"]["files"] == ["train-00000.parquet", "train-00001.parquet"]
    assert not (tmp_path / "train-00003.parquet").exists() and (tmp_path / "notes.txt").exists()
    # An empty split still has a file a trainer can open.
    assert pq.read_table(tmp_path / "validation-00000.parquet").num_rows == 0


def test_card_states_counts_sources_and_generation_settings():
    stats = Stats()
    for k, row in enumerate(rows(10)):
        stats.add(export_record(row), "validation" if k < 3 else "train")
    info = dataset_info(stats, ExportConfig(), "parquet", {"train": ["train-00000.parquet"],
                                                           "validation": ["validation-00000.parquet"]},
                        {"delta_version": 1})
    assert info["splits"]["train"]["num_examples"] == 7 and info["num_examples"] == 10
    assert info["sources"]["licenses"] == {"MIT": 10, "Apache-2.0": 5}
    assert info["sources"]["repos"] == 3
    assert info["generation"]["sampling"] == [{"params": {"n": 10, "temperature": 0.7}, "examples": 10}]
    card = dataset_card(info)
    assert card.startswith("---\n") and "path: train-*.parquet" in card and "path: validation-*.parquet" in card
    for line in ("| train | 7 |", "| validation | 3 |", "| MIT | 10 |", "| Apache-2.0 | 5 |",
                 "| starcoder2-15b | 10 |", "| respond-v1 | 10 |", "| instruct-v1 | 10 |",
                 '| {"n": 10, "temperature": 0.7} | 10 |', "Total: 10."):
        assert line in card
    assert dataset_card(info) == card


def test_card_wording_is_the_packaged_template_with_every_slot_filled():
    from jobs.stages.export import CARD_TEMPLATE

    info = dataset_info(Stats(), ExportConfig(), "jsonl", {}, {}, {"reference": "ref", "deviations": []})
    card = dataset_card(info)
    fixed = [line for line in CARD_TEMPLATE.read_text(encoding="utf-8").splitlines() if "$" not in line]
    assert fixed and all(line in card.splitlines() for line in fixed)
    assert "$" not in card and card.endswith("Made with the published StarCoder2-Instruct settings (ref).\n")


def test_unknown_format_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="jsonl, parquet"):
        write_dataset(iter([]), tmp_path, "csv", ExportConfig())


def test_card_names_each_setting_that_departs_from_the_published_recipe():
    def card_for(cfg):
        info = dataset_info(Stats(), ExportConfig(), "jsonl", {}, {}, recipe(cfg))
        return info, dataset_card(info)

    info, card = card_for(load_config(None, ["dedup.threshold=0.6"]))
    changed = {d["key"]: (d["published"], d["used"]) for d in info["recipe"]["deviations"]}
    assert changed["dedup.threshold"] == (0.5, 0.6)
    assert changed["dedup.verify"] == ("none", "exact")  # our default alternative
    assert changed["select.diversify_function_names"] == ("global", "per_seed")
    assert not any(key.startswith("evaluate.") for key in changed)  # not about the data
    assert '| `dedup.verify` | "none" | "exact" |' in card
    info, card = card_for(load_config(None, profiles=["published"]))
    # Under the profile only what no setting reproduces is left: the stage order.
    assert [d["key"] for d in info["recipe"]["deviations"]] == ["stage order: dedup"]
    assert "(conf/profiles/published.yaml) except:" in card


def test_export_targets_resolve_to_their_file_systems(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import pyarrow.fs as pafs

    from jobs.core.outdir import filesystem_of

    local, path = filesystem_of(str(tmp_path / "out"))
    assert isinstance(local, pafs.LocalFileSystem) and path == str(tmp_path / "out")
    volume, path = filesystem_of("/Volumes/main/selfalign/exports/sft")  # a UC volume: a local path
    assert isinstance(volume, pafs.LocalFileSystem) and path == "/Volumes/main/selfalign/exports/sft"
    assert filesystem_of("dbfs:/exports/sft")[1] == "/dbfs/exports/sft"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    for uri in ("s3a://bucket/exports/sft", "s3://bucket/exports/sft"):
        store, path = filesystem_of(uri)
        assert isinstance(store, pafs.S3FileSystem) and path == "bucket/exports/sft"
    azure, path = filesystem_of("abfss://data@account.dfs.core.windows.net/exports/sft")
    assert type(azure).__name__ == "AzureFileSystem" and path == "data/exports/sft"
