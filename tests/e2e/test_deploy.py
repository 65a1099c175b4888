"""The deployment examples in conf/databricks and conf/emr, and the wheel they install."""

from __future__ import annotations

import json
import re
import shlex
import zipfile
from pathlib import Path

import pytest
import yaml

from jobs.core.config import load_config
from jobs.core.registry import STAGES
from tests.wheel import built_wheel

REPO = Path(__file__).resolve().parents[2]
DATABRICKS = REPO / "conf" / "databricks"
EMR = REPO / "conf" / "emr"
# The one spark-submit entry point (the selfalign CLI).
SUBMIT = "jobs/submit.py"


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts] (tomllib is 3.11+; the project supports 3.10)."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:
        table = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        assert table, "pyproject.toml has no [project.scripts]"
        return dict(re.findall(r'^\s*([\w.-]+)\s*=\s*"([^"]+)"', table.group(1), re.M))
    return tomllib.loads(text)["project"]["scripts"]


def bundle() -> dict:
    return yaml.safe_load((DATABRICKS / "databricks.yml").read_text())


def bundle_tasks() -> list[dict]:
    jobs = bundle()["resources"]["jobs"]
    assert jobs, "the bundle defines no job"
    return [task for job in jobs.values() for task in job["tasks"]]


def option(parameters: list[str], name: str) -> str | None:
    return parameters[parameters.index(name) + 1] if name in parameters else None


# --- Databricks ------------------------------------------------------------------------

def test_the_bundle_has_one_root_file():
    """The Databricks CLI refuses a directory holding both databricks.yml and databricks.yaml."""
    roots = [p.name for p in DATABRICKS.iterdir() if p.stem == "databricks" and p.suffix in (".yml", ".yaml")]
    assert roots == ["databricks.yml"]


def test_the_bundle_validates_against_the_bundle_fields_it_uses():
    from tests.databricks_bundle import Bundle, references

    raw = bundle()
    model = Bundle.model_validate(raw)
    declared = set(model.variables)
    used = {ref.split(".", 1)[1] for ref in references(raw) if ref.startswith("var.")}
    assert used <= declared, f"undeclared variables: {used - declared}"
    for target in model.targets.values():
        assert set(target.variables) <= declared
    for job in model.resources.jobs.values():
        clusters = {c.job_cluster_key for c in job.job_clusters}
        assert {task.job_cluster_key for task in job.tasks} <= clusters
    # The GPU cluster's driver does no GPU work (vLLM runs in executor tasks).
    gpu = next(c.new_cluster for job in model.resources.jobs.values() for c in job.job_clusters
               if c.job_cluster_key == "gpu")
    assert gpu.driver_node_type_id is not None and gpu.driver_node_type_id != gpu.node_type_id


def test_clusters_that_execute_generated_code_install_bubblewrap():
    from tests.databricks_bundle import Bundle

    model = Bundle.model_validate(bundle())
    job = next(iter(model.resources.jobs.values()))
    execute_task = next(t for t in job.tasks if "execute" in (option(t.python_wheel_task.parameters, "--stages") or ""))
    cluster = next(c.new_cluster for c in job.job_clusters if c.job_cluster_key == execute_task.job_cluster_key)
    [script] = [entry["workspace"]["destination"] for entry in cluster.init_scripts]
    local = DATABRICKS / script.rsplit("/", 1)[1]
    assert "apt-get install" in local.read_text() and "bubblewrap" in local.read_text()
    emr_script = EMR / "bootstrap-bubblewrap.sh"
    assert "bubblewrap" in emr_script.read_text()
    assert f"Path=$B/{emr_script.name}" in (EMR / "README.md").read_text()


def test_the_bundle_model_refuses_a_misspelled_key():
    import copy

    from pydantic import ValidationError

    from tests.databricks_bundle import Bundle

    raw = copy.deepcopy(bundle())
    task = next(iter(raw["resources"]["jobs"].values()))["tasks"][0]
    task["python_wheel_tsk"] = task.pop("python_wheel_task")
    with pytest.raises(ValidationError, match="python_wheel_tsk"):
        Bundle.model_validate(raw)


def test_bundle_has_a_scheduled_job_with_wheel_tasks():
    config = bundle()
    assert config["bundle"]["name"] == "selfalign"
    jobs = config["resources"]["jobs"]
    schedule = jobs["selfalign_nightly"]["schedule"]
    assert schedule["quartz_cron_expression"].split() and schedule["timezone_id"] == "UTC"
    assert "schedule" not in jobs["selfalign_train"]  # fine-tuning runs on demand
    assert all(job["tasks"] for job in jobs.values())
    artifact = next(iter(config["artifacts"].values()))
    assert artifact["type"] == "whl" and "build" in artifact["build"]
    assert (DATABRICKS / artifact["path"] / "pyproject.toml").is_file()


def test_bundle_tasks_call_the_selfalign_entry_point_with_known_stages():
    scripts = console_scripts()
    seen_stages: list[str] = []
    for task in bundle_tasks():
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == "selfalign"
        assert wheel["entry_point"] == "selfalign"
        assert scripts[wheel["entry_point"]] == "jobs.cli:main"
        params = wheel["parameters"]
        assert params[0] in {"run", "report", "status", "train"}, params
        config = option(params, "--config")
        assert config is not None and config.endswith("/pipeline.yaml")
        if params[0] == "run":
            stages = option(params, "--stages")
            assert stages, f"task {task['task_key']} runs no named stages"
            unknown = [s for s in stages.split(",") if s not in STAGES]
            assert not unknown, f"task {task['task_key']}: unknown stages {unknown}"
            seen_stages += stages.split(",")
        assert any(lib.get("whl", "").endswith(".whl") for lib in task["libraries"])
    # Together, the groups run stages in DAG order, each once.
    order = list(STAGES)
    assert seen_stages == sorted(seen_stages, key=order.index)
    assert len(seen_stages) == len(set(seen_stages))


def test_bundle_dependencies_form_a_dag_over_existing_tasks():
    tasks = bundle_tasks()
    keys = [t["task_key"] for t in tasks]
    assert len(keys) == len(set(keys))
    for position, task in enumerate(tasks):
        for dep in task.get("depends_on", []):
            assert dep["task_key"] in keys, f"{task['task_key']} depends on unknown {dep}"
            assert keys.index(dep["task_key"]) < position, "tasks are listed in DAG order"
    clusters = {
        c["job_cluster_key"]: c["new_cluster"]
        for job in bundle()["resources"]["jobs"].values() for c in job["job_clusters"]
    }
    assert all(t["job_cluster_key"] in clusters for t in tasks)
    assert "gpu" in clusters["gpu"]["spark_version"]


def test_databricks_pipeline_config_validates():
    cfg = load_config(DATABRICKS / "pipeline.yaml")
    assert cfg.llm.engine == "vllm"
    assert cfg.generation.gpu_resource_profile is True
    assert cfg.lake.root.startswith(("s3://", "abfss://", "dbfs:", "/Volumes/"))


# --- EMR -------------------------------------------------------------------------------

def submitted_stage(path: str, arguments: list[str]) -> str:
    """The stage an S3 entry point runs: it must be this repository's jobs/submit.py with
    `run --stages <one known stage>`."""
    assert path.endswith("/" + SUBMIT), f"{path} is not {SUBMIT}"
    assert (REPO / SUBMIT).is_file()
    assert arguments[0] == "run"
    stage = option(arguments, "--stages")
    assert stage in STAGES, f"unknown stage {stage!r}"
    return stage


def test_emr_steps_submit_known_stages_in_dag_order():
    steps = json.loads((EMR / "step.json").read_text())
    assert isinstance(steps, list) and steps
    stages = []
    for step in steps:
        assert {"Name", "ActionOnFailure", "HadoopJarStep"} <= set(step)
        assert step["ActionOnFailure"] in {"TERMINATE_CLUSTER", "CANCEL_AND_WAIT", "CONTINUE"}
        args = step["HadoopJarStep"]["Args"]
        assert args[0] == "spark-submit"
        assert option(args, "--deploy-mode") == "cluster"
        assert "#environment" in option(args, "--archives")
        assert any(a.startswith("spark.pyspark.python=./environment/") for a in args)
        assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in args
        at = next(i for i, a in enumerate(args) if a.endswith(".py"))
        stages.append(submitted_stage(args[at], args[at + 1:]))
        assert option(args, "--config") == "emr.yaml"
        assert any(f.endswith("/emr.yaml") for f in option(args, "--files").split(","))
    order = list(STAGES)
    assert stages == sorted(stages, key=order.index)


def test_emr_serverless_request_has_the_required_fields():
    request = json.loads((EMR / "serverless-start-job-run.json").read_text())
    assert request["applicationId"]
    assert request["executionRoleArn"].startswith("arn:aws:iam::")
    submit = request["jobDriver"]["sparkSubmit"]
    submitted_stage(submit["entryPoint"], submit["entryPointArguments"])
    assert option(submit["entryPointArguments"], "--config") == "emr.yaml"
    params = shlex.split(submit["sparkSubmitParameters"])
    confs = dict(params[i + 1].split("=", 1) for i, p in enumerate(params) if p == "--conf")
    assert confs["spark.archives"].split(",")[0].endswith("#environment")
    assert confs["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert confs["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert confs["spark.files"].endswith("/emr.yaml")


def test_emr_cluster_configurations_are_emr_classifications():
    classifications = json.loads((EMR / "cluster-configurations.json").read_text())
    names = {c["Classification"] for c in classifications}
    assert {"yarn-site", "capacity-scheduler", "delta-defaults"} <= names
    delta = next(c for c in classifications if c["Classification"] == "delta-defaults")
    assert delta["Properties"] == {"delta.enabled": "true"}


def test_emr_uses_the_platforms_delta_and_fetches_nothing_at_submit_time():
    """EMR ships its own Delta (built for its own Spark): no --packages, no Maven."""
    steps = json.loads((EMR / "step.json").read_text())
    for step in steps:
        args = step["HadoopJarStep"]["Args"]
        assert "--packages" not in args and not any("jars.packages" in a for a in args), step["Name"]
    serverless = (EMR / "serverless-start-job-run.json").read_text()
    assert "spark.jars.packages" not in serverless and "--packages" not in serverless
    params = json.loads(serverless)["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    jars = dict(re.findall(r"--conf (\S+?)=(\S+)", params))["spark.jars"].split(",")
    assert jars and all(j.startswith("/usr/share/aws/delta/lib/delta-") for j in jars)


def test_emr_pipeline_config_validates():
    cfg = load_config(EMR / "emr.yaml")
    assert cfg.lake.root.startswith("s3://") and cfg.input.path.startswith("s3://")
    assert cfg.llm.engine == "vllm" and cfg.generation.gpu_resource_profile is True


def test_readmes_exist():
    for folder in (DATABRICKS, EMR):
        assert (folder / "README.md").read_text().strip()


# --- the wheel -------------------------------------------------------------------------

@pytest.mark.slow
def test_wheel_holds_the_code_configs_and_entry_point(tmp_path: Path):
    with zipfile.ZipFile(built_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    for package in ("jobs", "udfs", "schemas"):
        assert f"{package}/__init__.py" in names
    assert {"jobs/cli.py", "jobs/tools/report.py", "udfs/report_charts.py"} <= names
    assert "conf/local.yaml" in names
    prompts = {p.name for p in (REPO / "conf" / "prompts").glob("*.yaml")}
    assert prompts and {f"conf/prompts/{p}" for p in prompts} <= names
    profiles = {p.name for p in (REPO / "conf" / "profiles").glob("*.yaml")}
    assert "published.yaml" in profiles and {f"conf/profiles/{p}" for p in profiles} <= names
    assert {"udfs/training/run.py", "jobs/stages/train.py", "udfs/llm/transformers_engine.py"} <= names
    assert "[console_scripts]" in scripts
    assert "selfalign = jobs.cli:main" in scripts


def gpu_extra() -> list[str]:
    text = (REPO / "pyproject.toml").read_text()
    found = re.search(r'^gpu = \[(.*?)\]', text, re.M)
    assert found, "pyproject.toml has no gpu extra"
    return re.findall(r'"([^"]+)"', found.group(1))


def test_the_gpu_stack_is_one_exact_pin_installed_everywhere_alike():
    [pin] = gpu_extra()
    assert re.fullmatch(r"vllm==\d+(\.\d+)+", pin), pin
    bundled = [library["pypi"]["package"] for task in bundle_tasks()
               for library in task.get("libraries", []) if "pypi" in library]
    assert [p for p in bundled if p.startswith("vllm")] == [pin]


def test_emr_gpu_steps_run_from_the_venv_built_with_the_gpu_extra():
    """GPU steps get the archive the README builds with `[gpu]`; CPU steps the one with
    pyright's own Node.js (EMR nodes have no node)."""
    steps = json.loads((EMR / "step.json").read_text())
    archives = {}
    for step in steps:
        args = step["HadoopJarStep"]["Args"]
        gpu = any(a.startswith("spark.executor.resource.gpu.amount=") for a in args)
        venv = option(args, "--archives").split(",")[0]
        archives.setdefault(gpu, set()).add(venv.split("/")[-1])
    assert archives == {True: {"selfalign-gpu-venv.tar.gz#environment"},
                        False: {"selfalign-venv.tar.gz#environment"}}
    recipe = (EMR / "README.md").read_text()
    gpu_build = re.search(r'pip install [^\n]*"\$wheel\[gpu,train\]"[^\n]*\n[^\n]*-o selfalign-gpu-venv\.tar\.gz', recipe)
    cpu_build = re.search(r'pip install [^\n]*"pyright\[nodejs\]==[^"]+"[^\n]*\n[^\n]*-o selfalign-venv\.tar\.gz', recipe)
    assert gpu_build and cpu_build


def test_training_runs_one_process_per_gpu_from_the_gpu_venv():
    [step] = json.loads((EMR / "train-step.json").read_text())
    args = step["HadoopJarStep"]["Args"]
    at = next(i for i, a in enumerate(args) if a.endswith(".py"))
    assert args[at].endswith("/" + SUBMIT) and args[at + 1] == "train"
    conf = dict(a.split("=", 1) for a in args[:at] if a.startswith("spark.") and "=" in a)
    settings = dict(a.split("=", 1) for a in args[at:] if a.startswith("train."))
    gpus = int(conf["spark.executor.resource.gpu.amount"]) * int(conf["spark.executor.instances"])
    assert int(settings["train.num_processes"]) == gpus // int(conf["spark.task.resource.gpu.amount"])
    assert settings["train.local_mode"] == "false"
    assert option(args, "--archives").split(",")[0].endswith("selfalign-gpu-venv.tar.gz#environment")
    cfg = load_config(EMR / "emr.yaml", [f"{k}={v}" for k, v in settings.items()])
    assert cfg.train.num_processes == gpus
    databricks = next(t for t in bundle_tasks() if t["python_wheel_task"]["parameters"][0] == "train")
    params = databricks["python_wheel_task"]["parameters"]
    assert "train.local_mode=true" in params and "train.num_processes=8" in params


def test_every_task_of_a_night_records_one_run_id():
    """The Databricks job passes its own run id to every task; the EMR step list one id
    that README substitutes for @RUN_ID@ before `aws emr add-steps`."""
    from jobs.core.context import chosen_run_id

    for task in bundle_tasks():
        params = task["python_wheel_task"]["parameters"]
        if params[0] in ("run", "report"):
            assert option(params, "--run-id") == "{{job.run_id}}", task["task_key"]
    steps = json.loads((EMR / "step.json").read_text())
    ids = {option(step["HadoopJarStep"]["Args"], "--run-id") for step in steps}
    assert ids == {"@RUN_ID@"}
    assert 'sed "s/@RUN_ID@/$RUN_ID/"' in (EMR / "README.md").read_text()
    # What the platforms substitute is a valid id: Databricks' run ids are numbers.
    assert chosen_run_id("912345678901234") == "912345678901234"
    assert chosen_run_id("nightly-20261206T020000Z") == "nightly-20261206T020000Z"
