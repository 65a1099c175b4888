"""Config loading: typed values, one-line errors naming the key, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config import ConfigError, load_config, parse_config
from jobs.pipeline import STAGES, select_stages


def test_packaged_default_loads_with_documented_values():
    cfg = load_config()
    assert cfg.lake.root == "./lake"
    assert cfg.dedup.threshold == 0.5 and cfg.dedup.num_perm == 256
    assert cfg.extract.max_lines == 150
    assert "subprocess" in cfg.extract.banned_imports


def test_overrides_parse_values_as_yaml():
    cfg = load_config(None, ["dedup.threshold=0.6", "extract.markers=[HACK]", "spark.extra.spark.foo=bar"])
    assert cfg.dedup.threshold == 0.6
    assert cfg.extract.markers == ["HACK"]
    assert cfg.spark.extra == {"spark.foo": "bar"}


def test_spark_properties_given_as_yaml_scalars_become_spark_strings():
    cfg = load_config(None, ["spark.extra.spark.eventLog.enabled=true", "spark.extra.spark.sql.shuffle.partitions=8",
                             "spark.extra.spark.memory.fraction=0.5"])
    assert cfg.spark.extra == {"spark.eventLog.enabled": "true", "spark.sql.shuffle.partitions": "8",
                               "spark.memory.fraction": "0.5"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"dedup": {"thresh": 0.5}}, "config: unknown key 'dedup.thresh'"),
        ({"dedup": {"threshold": "high"}}, "config: key 'dedup.threshold': Input should be a valid number"),
        ({"dedup": {"threshold": 1.5}}, "config: key 'dedup.threshold': Input should be less than 1"),
        ({"extract": {"max_lines": "150"}}, "config: key 'extract.max_lines': Input should be a valid integer"),
        ({"decontaminate": {"benchmarks": [{"name": "x"}]}}, "config: missing required key 'decontaminate.benchmarks.0.path'"),
        ({"surprise": 1}, "config: unknown key 'surprise'"),
    ],
)
def test_errors_are_one_line_and_name_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lake: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(listy)


def test_malformed_override():
    with pytest.raises(ConfigError, match=r"must look like key\.path=value"):
        load_config(None, ["dedup.threshold"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(None, ["lake.root.deeper=1"])


def test_fingerprint_changes_with_config_only():
    assert load_config().fingerprint() == load_config().fingerprint()
    assert load_config().fingerprint() != load_config(None, ["dedup.threshold=0.7"]).fingerprint()


def test_stage_selection_keeps_dag_order():
    order = list(STAGES)
    assert select_stages() == order
    assert select_stages(until=order[0]) == order[:1]
    assert select_stages(start=order[-1]) == order[-1:]
    assert select_stages(only=",".join(reversed(order))) == order
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        select_stages(only="nope")
