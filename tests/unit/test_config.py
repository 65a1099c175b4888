"""Config loading: typed values, one-line errors naming the key, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from jobs.core.config import (
    REMOVED,
    ConfigError,
    PipelineConfig,
    default_config_path,
    load_config,
    parse_config,
    read_mapping,
)
from jobs.core.recipe import _leaves, _value
from jobs.core.registry import STAGES, select_stages
from jobs.core.sections import Section, derived_seed
from jobs.ops.lsh import LSHParams, band_choice


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
        ({"benchmarks": {"files": {"humaneval2": "x.jsonl"}}}, "config: key 'benchmarks.files': unknown set 'humaneval2'"),
        ({"surprise": 1}, "config: unknown key 'surprise'"),
        ({"lake": {"catalog": "main"}}, "config: key 'lake.catalog': needs lake.schema too"),
        ({"lake": {"schema": "main.selfalign"}}, "config: key 'lake.schema': expected one name"),
        ({"spark": {"remote": "localhost:15002"}}, "config: key 'spark.remote': expected sc://host:port"),
        ({"spark": {"remote": "sc://host:port"}}, "config: key 'spark.remote': expected sc://host:port"),
        ({"extract": {"rules": ["needs_return", "nosuchrule"]}},
         "config: key 'extract.rules': unknown rule(s) ['nosuchrule']; known: ['needs_return'"),
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
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"lake:\n  root: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml is not UTF-8 text \(byte 17\)"):
        load_config(latin)
    with pytest.raises(ConfigError, match="is a directory, not a YAML file"):
        load_config(tmp_path)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(listy)


def test_malformed_override():
    with pytest.raises(ConfigError, match=r"must look like key\.path=value"):
        load_config(None, ["dedup.threshold"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(None, ["lake.root.deeper=1"])
    with pytest.raises(ConfigError, match=r"override 'extract.rules=\[a,b': the value is expected"):
        load_config(None, ["extract.rules=[a,b"])


@pytest.mark.parametrize("argv", [["run", "--set", "x=[1,2"], ["run", "--set", "extract.rules=[nosuchrule]"]])
def test_bad_cli_input_is_one_line_and_exit_2_before_spark(argv, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("selfalign: error: config: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("selfalign 0.")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "extract -> decontaminate -> typecheck -> dedup -> judge" in help_text
    assert "selfalign run --until dedup" in help_text


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


def test_training_joins_a_whole_dag_run_only_when_switched_on():
    from jobs.core.registry import stages_to_run

    assert stages_to_run(load_config(None))[-2:] == ["select", "export"]
    assert stages_to_run(load_config(None, ["train.in_dag=true"]))[-2:] == ["export", "train"]
    assert stages_to_run(load_config(None), only="train") == ["train"]
    assert stages_to_run(load_config(None), start="export") == ["export"]


# Values that used to break every sandbox run (an overflow inside the run, limits the
# kernel refuses, an output budget too small for the completion marker).
@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("wall_seconds", ".inf", "from 0.5 to 7200"),
        ("cpu_seconds", "1e20", "from 1 to 3600"),
        ("memory_bytes", "1e23", "from 33554432 to 1099511627776"),
        ("memory_bytes", "0", "from 33554432 to 1099511627776"),
    ],
)
def test_sandbox_limits_outside_their_range_are_one_line_naming_key_and_range(key, value, allowed):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"sandbox.{key}={value}"])
    message = str(caught.value)
    assert message.startswith(f"config: key 'sandbox.{key}': must be {allowed}")
    assert "\n" not in message


def test_sandbox_limits_at_their_bounds_load() -> None:
    cfg = load_config(None, ["sandbox.wall_seconds=7200", "sandbox.cpu_seconds=1",
                             "sandbox.memory_bytes=33554432"])
    assert (cfg.sandbox.wall_seconds, cfg.sandbox.cpu_seconds) == (7200, 1)


def test_a_bad_sandbox_limit_stops_the_cli_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["sample", "--set", "sandbox.wall_seconds=.inf"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "selfalign: error: config: key 'sandbox.wall_seconds': must be from 0.5 to 7200 (got inf)"


def test_catalog_and_connect_settings():
    cfg = load_config(None, ["lake.catalog=main", "lake.schema=selfalign",
                             "spark.remote=sc://dbc.example.com:443/;token=x;x-databricks-cluster-id=1"])
    assert (cfg.lake.catalog, cfg.lake.schema) == ("main", "selfalign")
    assert cfg.spark.remote == "sc://dbc.example.com:443/;token=x;x-databricks-cluster-id=1"
    assert load_config().lake.schema is None  # path tables stay the default


def test_remote_comes_from_config_or_spark_remote(monkeypatch):
    from jobs.core.session import remote_url

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    assert remote_url(load_config().spark) is None
    monkeypatch.setenv("SPARK_REMOTE", "sc://from-env:15002")
    assert remote_url(load_config().spark) == "sc://from-env:15002"
    assert remote_url(load_config(None, ["spark.remote=sc://from-config:1"]).spark) == "sc://from-config:1"


def test_the_local_driver_runs_the_serial_collector_unless_the_user_names_one():
    from jobs.core.session import java_options

    def options(*overrides: str) -> list[str]:
        return java_options(load_config(None, list(overrides)).spark).split()

    assert "-XX:+UseSerialGC" in options()
    assert {"-XX:+UseSerialGC", "-Xss4m"} <= set(options("spark.extra.spark.driver.extraJavaOptions=-Xss4m"))
    # Two collectors on one command line stop the JVM: the user's replaces ours.
    chosen = options("spark.extra.spark.driver.extraJavaOptions=-XX:+UseParallelGC -Xss4m")
    assert "-XX:+UseParallelGC" in chosen and "-XX:+UseSerialGC" not in chosen


@pytest.mark.spark
def test_the_test_session_jvm_collects_with_the_serial_collector(spark):
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    # The serial collector's two generations; G1's would be "G1 Young Generation", ...
    assert sorted(bean.getName() for bean in beans) == ["Copy", "MarkSweepCompact"]


@pytest.mark.spark
def test_local_mode_runs_plans_without_generated_code(spark):
    from pyspark.sql import functions as F

    plan = spark.range(10).where(F.col("id") > 3).select((F.col("id") * 2).alias("twice"))
    # Whole-stage code marks each operator it fuses with "*(n)" in the physical plan.
    physical = plan._jdf.queryExecution().executedPlan().toString()
    assert "WholeStageCodegen" not in physical and "*(" not in physical, physical
    assert [row.twice for row in plan.collect()] == [8, 10, 12, 14, 16, 18]


def test_a_user_can_give_local_mode_generated_code_back():
    from jobs.core.session import local_conf

    def mode(*overrides: str) -> str:
        return local_conf(load_config(None, list(overrides)).spark)["spark.sql.codegen.factoryMode"]

    assert mode() == "NO_CODEGEN"
    assert mode("spark.extra.spark.sql.codegen.factoryMode=FALLBACK") == "FALLBACK"


def test_local_metastore_lives_under_the_lake_or_where_configured(tmp_path: Path):
    from jobs.core.session import metastore_dir

    cfg = load_config(None, [f"lake.root={tmp_path / 'lake'}", "lake.schema=s"])
    assert metastore_dir(cfg.spark, cfg.lake) == tmp_path / "lake" / "_metastore"
    cfg = load_config(None, ["lake.root=s3://bucket/lake", "lake.schema=s", f"spark.metastore_dir={tmp_path}"])
    assert metastore_dir(cfg.spark, cfg.lake) == tmp_path
    cfg = load_config(None, ["lake.root=s3://bucket/lake", "lake.schema=s"])
    with pytest.raises(ConfigError, match=r"spark\.metastore_dir': lake\.root 's3://bucket/lake' is not local"):
        metastore_dir(cfg.spark, cfg.lake)


def test_jars_that_cannot_be_resolved_are_one_line_naming_the_way_out(tmp_path: Path):
    """Resolution runs in a child process (its Ivy output hidden); a failure is one line.
    A malformed coordinate fails inside Ivy without any network access."""
    from jobs.core.session import cached_jars, ensure_jars

    cfg = load_config(None, [f"spark.ivy_dir={tmp_path / 'ivy'}", "spark.delta_package=not-a-coordinate"])
    with pytest.raises(ConfigError) as err:
        ensure_jars(cfg.spark)
    message = str(err.value)
    assert message.startswith("spark: cannot fetch not-a-coordinate (")
    assert "groupId:artifactId:version" in message and "spark.ivy_dir" in message
    assert "\n" not in message
    assert cached_jars(cfg.spark) is None


# --- profiles ----------------------------------------------------------------------------

def test_published_profile_sets_the_published_dedup_and_evaluation():
    default, published = load_config(None), load_config(None, profiles=["published"])
    # Our alternatives are the defaults; the profile turns them back.
    assert (default.dedup.verify, published.dedup.verify) == ("exact", "none")
    assert (default.dedup.num_perm, published.dedup.num_perm) == (256, 250)
    assert published.dedup.bands_threshold() == 0.5 and published.dedup.fp_weight == 0.5
    # The LSH bands as before the weights followed verify: 64 x 4 (default), 41 x 6 (published).
    assert band_choice(LSHParams.from_config(default.dedup)) == (64, 4)
    assert band_choice(LSHParams.from_config(published.dedup)) == (41, 6)
    assert (default.evaluate.prompt_format, published.evaluate.prompt_format) == ("completion", "instruct")
    assert (default.select.diversify_function_names, published.select.diversify_function_names) == (
        "per_seed", "global")
    assert (default.select.near_duplicates, published.select.near_duplicates) == (True, False)
    assert (default.select.sanitize.style, published.select.sanitize.style) == ("selfalign", "published")
    # execution_filter.py: a 4 s alarm around exec and a 1 GiB memory limit.
    assert (published.sandbox.wall_seconds, published.sandbox.memory_bytes) == (4.0, 1 << 30)
    assert (default.sandbox.wall_seconds, default.sandbox.memory_bytes) == (20.0, 2 << 30)
    # Where the defaults already are the published recipe, the profile changes nothing.
    assert published.generation.model_dump(exclude={"judge"}) == default.generation.model_dump(exclude={"judge"})


def test_profiles_merge_in_order_and_set_overrides_come_last(tmp_path: Path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("dedup: {threshold: 0.7}\ngeneration: {categories: {class implementation: 1.0}}\n")
    cfg = load_config(None, ["lsh.num_perm=128"], ["published", str(mine)])
    assert cfg.dedup.threshold == 0.7  # the later profile wins ...
    assert cfg.dedup.verify == "none"  # ... key by key, the rest of the section stays
    assert cfg.dedup.num_perm == 128  # --set applies last
    # A category mix is a whole table: a profile's mix replaces the default one.
    assert cfg.generation.categories == {"class implementation": 1.0}
    mix = load_config(None, profiles=["selfcodealign"]).generation.categories
    assert mix == {"function implementation": 0.5, "class implementation": 0.25, "program implementation": 0.25}


def test_unknown_profile_is_one_line_naming_the_packaged_ones():
    with pytest.raises(ConfigError, match=r"^profile: no packaged profile 'nope' \(packaged: laptop, published, selfcodealign"):
        load_config(None, profiles=["nope"])


def test_exponent_floats_without_a_dot_are_numbers(tmp_path: Path):
    # YAML 1.1 (PyYAML) reads 1e-5 as a string; a learning rate is written that way.
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  learning_rate: 2e-5\n")
    assert load_config(config).train.learning_rate == 2e-5
    assert load_config(None, ["train.learning_rate=3E-4"]).train.learning_rate == 3e-4
    assert load_config(None, ["train.base_model=v1e5"]).train.base_model == "v1e5"


def test_published_profile_trains_as_published_on_every_pair():
    default, published = load_config(None), load_config(None, profiles=["published"])
    assert (default.export.validation_fraction, published.export.validation_fraction) == (0.02, 0.0)
    assert (published.train.dtype, published.train.num_processes, published.train.sharding) == (
        "bfloat16", 1, "none")
    assert not published.train.gradient_checkpointing


def test_a_cached_set_with_s3a_jars_serves_a_run_without_them(tmp_path: Path):
    """`make test` resolves Delta with S3A's jars only; `make run` then starts offline on it."""
    from jobs.core.session import _manifest, cached_jars, packages

    plain = load_config(None, [f"spark.ivy_dir={tmp_path}"]).spark
    with_s3a = load_config(None, [f"spark.ivy_dir={tmp_path}", "spark.s3a_jars=true"]).spark
    jars = [tmp_path / "delta.jar", tmp_path / "hadoop-aws.jar"]
    for jar in jars:
        jar.write_bytes(b"PK")
    assert cached_jars(plain) is None
    _manifest(with_s3a).write_text("\n".join([",".join(packages(with_s3a)), *map(str, jars)]) + "\n")
    assert cached_jars(plain) == cached_jars(with_s3a) == [str(jar) for jar in jars]
    # ... never the other way round: a run on s3a:// needs the jars a plain set lacks.
    _manifest(with_s3a).unlink()
    _manifest(plain).write_text("\n".join([",".join(packages(plain)), str(jars[0])]) + "\n")
    assert cached_jars(plain) == [str(jars[0])] and cached_jars(with_s3a) is None
    jars[0].unlink()  # a jar gone from the cache: resolve again
    assert cached_jars(plain) is None


# --- a config half the size ----------------------------------------------------------------

def leaf_keys(model: type[BaseModel] = PipelineConfig, prefix: str = "") -> list[str]:
    """Every key a config can set: nested sections recursed into; a list, a dict or a
    value is one key."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            keys += leaf_keys(kind, key + ".")
        else:
            keys.append(key)
    return keys


def test_the_config_has_at_most_115_keys():
    # 110 after the config was cut down, plus the four cost.* prices accounting needs,
    # plus typecheck.checker (pyright, basedpyright or ty).
    keys = leaf_keys()
    assert len(keys) <= 115, f"{len(keys)} keys: every one is a key users must read about"
    assert not set(keys) & set(REMOVED)


def test_local_yaml_holds_only_values_that_differ_from_the_defaults():
    raw = read_mapping(default_config_path(), "config")
    defaults = PipelineConfig().model_dump(mode="json", by_alias=True)
    same = [".".join(path) for path, value in _leaves(raw) if _value(defaults, path) == value]
    assert not same, f"conf/local.yaml repeats the code's defaults: {same}"


def test_derived_seeds_keep_todays_values_and_follow_run_seed():
    cfg = load_config(None)
    assert (cfg.sample.seed, cfg.dedup.seed, cfg.select.seed, cfg.llm.seed, cfg.train.seed) == (0, 1, 1, 0, 42)
    other = load_config(None, ["run.seed=7"])
    assert (other.sample.seed, other.dedup.seed, other.train.seed) == (2**32 - 35, 2**32 - 34, 7)
    assert all(derived_seed(n, "dedup") != derived_seed(n + 1, "dedup") for n in range(100))


def test_derived_values_keep_todays_defaults():
    cfg = load_config(None)
    assert (cfg.dedup.num_perm, cfg.select.num_perm, cfg.dedup.max_iterations) == (256, 128, 50)
    assert (cfg.run.execute_chunk_rows, cfg.generation.evaluate_chunk_rows) == (5000, 500)
    assert (cfg.dedup.fp_weight, cfg.dedup.fn_weight, cfg.dedup.bands_threshold()) == (0.2, 0.8, 0.4)
    assert [spec.name for spec in cfg.decontaminate.benchmarks] == ["humaneval", "mbpp", "humanevalplus", "mbppplus"]
    assert cfg.decontaminate.benchmarks_dir == cfg.evaluate.benchmarks_dir == cfg.benchmarks.dir


@pytest.mark.parametrize("key", ["dedup.fp_weight", "select.sanitize.max_asserts"])
def test_a_removed_key_is_one_line_naming_its_replacement(tmp_path: Path, key: str):
    section, *middle, last = key.split(".")
    config = tmp_path / "old.yaml"
    nested = "".join(f"\n{'  ' * (i + 1)}{part}:" for i, part in enumerate(middle))
    config.write_text(f"{section}:{nested}\n{'  ' * (len(middle) + 1)}{last}: 0.5\n")
    for given in (lambda: load_config(config), lambda: load_config(None, [f"{key}=0.5"])):
        with pytest.raises(ConfigError) as err:
            given()
        assert str(err.value) == f"config: key '{key}' was removed: {REMOVED[key]}"
    assert REMOVED["dedup.fp_weight"] == "the LSH weights follow dedup.verify (see lsh)"


def test_a_removed_key_given_by_set_stops_the_cli_with_one_line(capsys: pytest.CaptureFixture[str]):
    from jobs.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["sample", "--set", "dedup.fp_weight=0.5"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("config: key 'dedup.fp_weight' was removed: the LSH weights follow dedup.verify (see lsh)")
    assert "\n" not in err
