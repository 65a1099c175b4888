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


# What a production deploy is given on the command line (README.md: BUNDLE_VAR_...).
DEPLOYER_SUPPLIES = frozenset({"service_principal"})
# GPUs per node and GB per GPU, as Databricks lists them ("GPU-enabled compute", AWS and
# Azure): the node types the bundle may name for vLLM and training.
GPU_NODES = {
    "p4de.24xlarge": (8, 80), "p5.48xlarge": (8, 80),
    "Standard_NC24ads_A100_v4": (1, 80), "Standard_NC48ads_A100_v4": (2, 80),
    "Standard_NC96ads_A100_v4": (4, 80),
}
STORAGE_URI = ("s3://", "abfss://", "/Volumes/")


def target_values(raw: dict, target: str) -> dict:
    """The variables' values a target deploys with: defaults, then the target's own."""
    values = {name: spec.get("default") for name, spec in raw["variables"].items()}
    values.update(raw["targets"][target].get("variables") or {})
    return values


def test_the_bundle_jobs_load_as_databricks_typed_jobs():
    from tests.databricks_bundle import bundle_errors, fixed, fixed_list, typed_jobs

    raw = bundle()
    jobs = typed_jobs(raw)
    assert set(jobs) == {"selfalign_nightly", "selfalign_train"}
    assert bundle_errors(raw, DEPLOYER_SUPPLIES) == []
    for job in jobs.values():
        clusters = {fixed(c.job_cluster_key) for c in fixed_list(job.job_clusters)}
        assert {fixed(task.job_cluster_key) for task in fixed_list(job.tasks)} <= clusters
    # The GPU cluster's driver does no GPU work (vLLM runs in executor tasks).
    gpu = fixed(next(c.new_cluster for c in fixed_list(jobs["selfalign_nightly"].job_clusters)
                     if c.job_cluster_key == "gpu"))
    assert gpu.driver_node_type_id is not None and gpu.driver_node_type_id != gpu.node_type_id
    readme = (DATABRICKS / "README.md").read_text()
    assert all(f"BUNDLE_VAR_{name}" in readme for name in DEPLOYER_SUPPLIES)


@pytest.mark.parametrize(("path", "value", "message"), [
    (("tasks", 0, "python_wheel_tsk"), {}, "Unexpected field 'python_wheel_tsk' for class Task"),
    (("job_clusters", 0, "new_cluster", "num_workers"), "eight", "invalid literal for int"),
    (("job_clusters", 0, "new_cluster", "init_scripts", 0), {"volume": {"destination": "/Volumes/x"}},
     "Unexpected field 'volume'"),
    (("tasks", 4, "run_if"), "ALWAYS", "is not a valid RunIf"),
    (("health", "rules", 0, "op"), "LESS_THAN", "is not a valid JobsHealthOperator"),
    (("email_notifications", "on_failure"), "oncall@example.com", "Unexpected type"),
])
def test_the_typed_classes_refuse_a_misspelled_key_or_a_wrong_type(path, value, message):
    """The check can fail: Databricks' classes refuse what the Jobs API would."""
    import copy

    from tests.databricks_bundle import typed_jobs

    raw = copy.deepcopy(bundle())
    node = raw["resources"]["jobs"]["selfalign_nightly"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises((ValueError, TypeError), match=message):
        typed_jobs(raw)


@pytest.mark.parametrize(("target", "edit", "message"), [
    ("prod", lambda t, raw: t.pop("workspace"), "target prod: 'mode: production' must set 'workspace.root_path'"),
    ("prod_azure", lambda t, raw: t.pop("run_as"), "target prod_azure: 'mode: production' must set 'run_as'"),
    ("prod", lambda t, raw: t.update(run_as={"user_name": "me@example.com"}), "run_as must be service_principal_name"),
    ("prod", lambda t, raw: t.update(run_as={"service_principal_name": "6d0c1b1e-0000-4000-8000-000000000000"}),
     "run_as must be service_principal_name"),
    ("prod", lambda t, raw: t.update(run_as={"service_principal": "${var.service_principal}"}),
     "Unexpected field 'service_principal'"),
    ("dev", lambda t, raw: t["variables"].pop("service_principal"),
     "target dev: no value assigned to required variable service_principal"),
    ("dev", lambda t, raw: t["variables"].update(gpu_nodes=2), "target dev: undeclared variable gpu_nodes"),
    ("prod", lambda t, raw: t.update(mode="prod"), "mode 'prod' is not one of"),
    ("prod", lambda t, raw: raw["resources"]["jobs"]["selfalign_nightly"].update(
        email_notifications={"on_failure": ["${var.oncall}"]}), "undeclared variable oncall"),
])
def test_the_bundle_rules_refuse_a_broken_bundle(target, edit, message):
    import copy

    from tests.databricks_bundle import bundle_errors

    raw = copy.deepcopy(bundle())
    edit(raw["targets"][target], raw)
    assert any(message in error for error in bundle_errors(raw, DEPLOYER_SUPPLIES)), bundle_errors(raw)


def test_production_targets_deploy_once_as_a_service_principal():
    raw = bundle()
    production = [name for name, t in raw["targets"].items() if t.get("mode") == "production"]
    assert set(production) == {"prod", "prod_azure"}
    for name in production:
        target = raw["targets"][name]
        assert target["run_as"] == {"service_principal_name": "${var.service_principal}"}
        root = target["workspace"]["root_path"]
        assert "${bundle.target}" in root and "${var.service_principal}" in root, root
    assert "default" not in raw["variables"]["service_principal"]


def test_prod_azure_is_azure_throughout_and_prod_is_aws():
    raw = bundle()
    azure, aws = target_values(raw, "prod_azure"), target_values(raw, "prod")
    node_types = [n for n in azure if n.endswith("node_type")]
    assert len(node_types) == 4
    assert all(str(azure[n]).startswith("Standard_") for n in node_types), {n: azure[n] for n in node_types}
    assert all(not str(aws[n]).startswith("Standard_") for n in node_types)
    for name in ("lake_root", "input_path"):
        assert azure[name].startswith("abfss://") and aws[name].startswith("s3://")
    assert not [v for v in azure.values() if isinstance(v, str) and v.startswith(("s3://", "s3a://"))]


def test_gpu_nodes_have_80gb_gpus_and_training_one_process_per_gpu():
    raw = bundle()
    for target in raw["targets"]:
        values = target_values(raw, target)
        for name in ("gpu_node_type", "train_node_type"):
            assert GPU_NODES[values[name]][1] == 80, (target, name)
        assert int(values["train_gpus"]) == GPU_NODES[values["train_node_type"]][0], target


def test_the_nightly_job_mails_on_failure_and_warns_on_a_long_run():
    from databricks.bundles.core import Variable
    from databricks.bundles.jobs import JobsHealthMetric, JobsHealthOperator

    from tests.databricks_bundle import fixed, fixed_list, typed_jobs

    raw = bundle()
    job = typed_jobs(raw)["selfalign_nightly"]
    notifications, health = fixed(job.email_notifications), fixed(job.health)
    # The address is a variable: one list item, ${var.alert_email}.
    [address] = fixed(notifications.on_failure)
    assert isinstance(address, Variable) and address.path == "var.alert_email"
    [rule] = fixed_list(health.rules)
    assert rule.metric == JobsHealthMetric.RUN_DURATION_SECONDS
    assert rule.op == JobsHealthOperator.GREATER_THAN
    assert isinstance(rule.value, Variable) and rule.value.path == "var.max_run_seconds"
    assert int(raw["variables"]["max_run_seconds"]["default"]) >= 3600


def test_the_nightly_job_ends_with_export_then_report():
    from databricks.bundles.jobs import RunIf

    from tests.databricks_bundle import fixed, fixed_list, typed_jobs

    raw = bundle()
    tasks = fixed_list(typed_jobs(raw)["selfalign_nightly"].tasks)
    assert [t.task_key for t in tasks][-2:] == ["export", "report"]
    export, report = tasks[-2], tasks[-1]
    params = [str(p) for p in fixed(fixed(export.python_wheel_task).parameters)]
    assert params[0] == "export" and option(params, "--out") == "${var.export_path}"
    assert [d.task_key for d in fixed_list(report.depends_on)] == ["export"]
    assert report.run_if == RunIf.ALL_DONE
    for target in raw["targets"]:
        assert str(target_values(raw, target)["export_path"]).startswith(STORAGE_URI), target


def test_the_volume_init_script_alternative_is_a_valid_init_script():
    """README's "Init script from a volume" block is an init_scripts list Databricks' classes accept."""
    from databricks.bundles.jobs import InitScriptInfo

    from tests.databricks_bundle import fixed

    readme = (DATABRICKS / "README.md").read_text()
    section = readme[readme.index("### Init script from a volume"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block
    [script] = [InitScriptInfo.from_dict(entry) for entry in yaml.safe_load(block.group(1))["init_scripts"]]
    assert script.volumes is not None and script.workspace is None
    destination = str(fixed(script.volumes).destination)
    assert destination.startswith("/Volumes/") and (DATABRICKS / destination.rsplit("/", 1)[1]).is_file()


def test_clusters_that_execute_generated_code_install_bubblewrap():
    from tests.databricks_bundle import fixed, fixed_list, typed_jobs

    job = typed_jobs(bundle())["selfalign_nightly"]
    execute_task = next(t for t in fixed_list(job.tasks) if "execute" in (
        option([str(p) for p in fixed(fixed(t.python_wheel_task).parameters)], "--stages") or ""))
    cluster = fixed(next(c.new_cluster for c in fixed_list(job.job_clusters)
                         if c.job_cluster_key == execute_task.job_cluster_key))
    [script] = [fixed(entry.workspace) for entry in fixed_list(cluster.init_scripts)]
    local = DATABRICKS / str(script.destination).rsplit("/", 1)[1]
    assert "apt-get install" in local.read_text() and "bubblewrap" in local.read_text()
    emr_script = EMR / "bootstrap-bubblewrap.sh"
    assert "bubblewrap" in emr_script.read_text()
    assert f"Path=$B/{emr_script.name}" in (EMR / "README.md").read_text()


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
        assert params[0] in {"run", "report", "export", "train"}, params
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


def emr_steps() -> list[dict]:
    steps = json.loads((EMR / "step.json").read_text())
    assert isinstance(steps, list) and steps
    return steps


def spark_steps() -> list[dict]:
    return [s for s in emr_steps() if s["HadoopJarStep"]["Args"][0] == "spark-submit"]


def entry_arguments(step: dict) -> list[str]:
    """What a spark-submit step passes the selfalign CLI (after jobs/submit.py)."""
    args = step["HadoopJarStep"]["Args"]
    at = next(i for i, a in enumerate(args) if a.endswith(".py"))
    assert args[at].endswith("/" + SUBMIT), f"{args[at]} is not {SUBMIT}"
    return args[at + 1:]


def test_emr_steps_submit_known_stages_in_dag_order_then_export_and_report():
    stages, commands = [], []
    for step in emr_steps():
        assert {"Name", "ActionOnFailure", "HadoopJarStep"} <= set(step)
        assert step["ActionOnFailure"] in {"TERMINATE_CLUSTER", "CANCEL_AND_WAIT", "CONTINUE"}
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    for step in spark_steps():
        args = step["HadoopJarStep"]["Args"]
        assert option(args, "--deploy-mode") == "cluster"
        assert "#environment" in (option(args, "--archives") or "")
        assert any(a.startswith("spark.pyspark.python=./environment/") for a in args)
        assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in args
        arguments = entry_arguments(step)
        commands.append(arguments[0])
        if arguments[0] == "run":
            at = next(i for i, a in enumerate(args) if a.endswith(".py"))
            stages.append(submitted_stage(args[at], arguments))
        assert option(arguments, "--config") == "emr.yaml"
        assert any(f.endswith("/emr.yaml") for f in (option(args, "--files") or "").split(","))
    order = list(STAGES)
    assert stages == sorted(stages, key=order.index) and len(stages) == len(set(stages))
    assert stages[-1] == "select"
    assert commands == ["run"] * len(stages) + ["export", "report"]


def test_emr_exports_to_s3_and_copies_the_report_to_s3():
    export, report = spark_steps()[-2:]
    out = option(entry_arguments(export), "--out")
    assert out is not None and out.startswith("s3://"), out
    reports = option(entry_arguments(report), "--out")
    assert reports is not None and reports.startswith("/mnt/efs/")
    sync = emr_steps()[-1]["HadoopJarStep"]["Args"]
    assert sync[:3] == ["aws", "s3", "sync"] and sync[3] == reports and sync[4].startswith("s3://")
    # The report and its copy run as the last steps, even when the copy fails.
    assert [s["ActionOnFailure"] for s in emr_steps()[-2:]] == ["CONTINUE", "CONTINUE"]
    efs = (EMR / "bootstrap-efs.sh").read_text()
    assert "mount -t efs" in efs and "/mnt/efs/selfalign/reports" in efs
    assert "Path=$B/bootstrap-efs.sh" in (EMR / "README.md").read_text()


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
    assert {"yarn-site", "capacity-scheduler", "delta-defaults", "container-executor"} <= names
    delta = next(c for c in classifications if c["Classification"] == "delta-defaults")
    assert delta["Properties"] == {"delta.enabled": "true"}


EMR_GPU_DOC = "https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-spark-rapids.html"


def test_emr_gpu_scheduling_is_the_al2023_cgroup_v2_recipe():
    """AWS's EMR 7.x+ recipe (Amazon Linux 2023 boots cgroup v2): YARN and the container
    executor use one cgroup root that a bootstrap action mounts a v1 `devices` controller
    under; the EMR 6.x root /sys/fs/cgroup is gone."""
    classifications = {c["Classification"]: c for c in json.loads((EMR / "cluster-configurations.json").read_text())}
    yarn = classifications["yarn-site"]["Properties"]
    assert yarn["yarn.nodemanager.resource-plugins"] == yarn["yarn.resource-types"] == "yarn.io/gpu"
    assert yarn["yarn.nodemanager.container-executor.class"].endswith(".LinuxContainerExecutor")
    executor = {c["Classification"]: c["Properties"] for c in classifications["container-executor"]["Configurations"]}
    assert executor["gpu"] == {"module.enabled": "true"}
    root = yarn["yarn.nodemanager.linux-container-executor.cgroups.mount-path"]
    assert root == executor["cgroups"]["root"] and root != "/sys/fs/cgroup"
    assert executor["cgroups"]["yarn-hierarchy"] == yarn["yarn.nodemanager.linux-container-executor.cgroups.hierarchy"]
    assert (classifications["capacity-scheduler"]["Properties"]["yarn.scheduler.capacity.resource-calculator"]
            .endswith(".DominantResourceCalculator"))
    script = (EMR / "bootstrap-gpu-cgroup.sh").read_text()
    assert f"CGROUP_ROOT={root}\n" in script
    assert 'mount -t cgroup -o devices cgroupv1-devices "$CGROUP_ROOT/devices"' in script
    readme = (EMR / "README.md").read_text()
    assert EMR_GPU_DOC in readme and "Path=$B/bootstrap-gpu-cgroup.sh" in readme
    assert "--release-label emr-spark-8.0.0" in readme


def test_emr_uses_the_platforms_delta_and_fetches_nothing_at_submit_time():
    """EMR ships its own Delta (built for its own Spark): no --packages, no Maven."""
    for step in emr_steps():
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
    assert "conf/templates/dataset_card.md" in names  # the export's card wording
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
    archives = {}
    for step in spark_steps():
        args = step["HadoopJarStep"]["Args"]
        gpu = any(a.startswith("spark.executor.resource.gpu.amount=") for a in args)
        venv = (option(args, "--archives") or "").split(",")[0]
        archives.setdefault(gpu, set()).add(venv.split("/")[-1])
    assert archives == {True: {"selfalign-gpu-venv.tar.gz#environment"},
                        False: {"selfalign-venv.tar.gz#environment"}}
    recipe = (EMR / "README.md").read_text()
    gpu_build = re.search(r'pip install [^\n]*"\$wheel\[gpu,train\]"[^\n]*\n[^\n]*-o selfalign-gpu-venv\.tar\.gz', recipe)
    cpu_build = re.search(r'pip install [^\n]*"\$wheel\[report\]" "pyright\[nodejs\]==[^"]+"[^\n]*\n[^\n]*-o selfalign-venv\.tar\.gz', recipe)
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
    assert (option(args, "--archives") or "").split(",")[0].endswith("selfalign-gpu-venv.tar.gz#environment")
    cfg = load_config(EMR / "emr.yaml", [f"{k}={v}" for k, v in settings.items()])
    assert cfg.train.num_processes == gpus
    databricks = next(t for t in bundle_tasks() if t["python_wheel_task"]["parameters"][0] == "train")
    params = databricks["python_wheel_task"]["parameters"]
    assert "train.local_mode=true" in params and "train.num_processes=${var.train_gpus}" in params


def test_every_task_of_a_night_records_one_run_id():
    """The Databricks job passes its own run id to every task; the EMR step list one id
    that README substitutes for @RUN_ID@ before `aws emr add-steps`."""
    from jobs.core.context import chosen_run_id

    for task in bundle_tasks():
        params = task["python_wheel_task"]["parameters"]
        if params[0] in ("run", "report"):
            assert option(params, "--run-id") == "{{job.run_id}}", task["task_key"]
    # Every step that records a run (run, report) carries the one id; export records none.
    recording = [entry_arguments(s) for s in spark_steps() if entry_arguments(s)[0] in ("run", "report")]
    assert len(recording) == len(spark_steps()) - 1
    assert {option(arguments, "--run-id") for arguments in recording} == {"@RUN_ID@"}
    assert sum("@RUN_ID@" in json.dumps(step) for step in emr_steps()) == len(recording)
    assert 'sed "s/@RUN_ID@/$RUN_ID/"' in (EMR / "README.md").read_text()
    # What the platforms substitute is a valid id: Databricks' run ids are numbers.
    assert chosen_run_id("912345678901234") == "912345678901234"
    assert chosen_run_id("nightly-20261206T020000Z") == "nightly-20261206T020000Z"
