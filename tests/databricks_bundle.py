"""The fields of a Databricks Asset Bundle (databricks.yml) that conf/databricks uses.

A pydantic model written from the bundle reference's field names and allowed values,
strict about unknown keys (a misspelled key is silently ignored by no one but us) and
about the value sets the reference lists. Narrower than the full bundle JSON schema:
only what our bundle uses, so adding a new kind of field means adding it here too.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# ${var.name}, ${workspace.file_path}, ${bundle.target}: bundle substitutions.
SUBSTITUTION = re.compile(r"\$\{([a-z_]+(?:\.[A-Za-z0-9_]+)+)\}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _count(value: int | str) -> int | str:
    if isinstance(value, str) and not SUBSTITUTION.fullmatch(value):
        raise ValueError("a count is an integer or one ${var...} substitution")
    return value


class NewCluster(Strict):
    spark_version: str
    node_type_id: str
    driver_node_type_id: str | None = None
    num_workers: int | str
    data_security_mode: Literal["SINGLE_USER", "USER_ISOLATION", "NONE", "DATA_SECURITY_MODE_AUTO",
                                "DATA_SECURITY_MODE_STANDARD", "DATA_SECURITY_MODE_DEDICATED"] | None = None
    spark_conf: dict[str, str] = Field(default_factory=dict)
    spark_env_vars: dict[str, str] = Field(default_factory=dict)
    custom_tags: dict[str, str] = Field(default_factory=dict)
    init_scripts: list[dict[str, dict[str, str]]] = Field(default_factory=list)

    _workers = field_validator("num_workers")(_count)


class JobCluster(Strict):
    job_cluster_key: str
    new_cluster: NewCluster


class Schedule(Strict):
    quartz_cron_expression: str
    timezone_id: str
    pause_status: Literal["PAUSED", "UNPAUSED"] | None = None


class PythonWheelTask(Strict):
    package_name: str
    entry_point: str
    parameters: list[str] = Field(default_factory=list)


class PyPiLibrary(Strict):
    package: str
    repo: str | None = None


class Library(Strict):
    whl: str | None = None
    pypi: PyPiLibrary | None = None


class DependsOn(Strict):
    task_key: str


class Task(Strict):
    task_key: str
    depends_on: list[DependsOn] = Field(default_factory=list)
    run_if: Literal["ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE",
                    "AT_LEAST_ONE_FAILED", "ALL_FAILED"] | None = None
    job_cluster_key: str
    python_wheel_task: PythonWheelTask
    libraries: list[Library] = Field(default_factory=list)
    timeout_seconds: int | None = None


class Job(Strict):
    name: str
    max_concurrent_runs: int | None = None
    schedule: Schedule | None = None
    job_clusters: list[JobCluster] = Field(default_factory=list)
    tasks: list[Task]


class Resources(Strict):
    jobs: dict[str, Job]


class Artifact(Strict):
    type: Literal["whl", "jar"]
    path: str
    build: str | None = None


class Variable(Strict):
    description: str | None = None
    default: Any = None


class Target(Strict):
    mode: Literal["development", "production"] | None = None
    default: bool | None = None
    variables: dict[str, Any] = Field(default_factory=dict)


class BundleName(Strict):
    name: str


class Bundle(Strict):
    bundle: BundleName
    variables: dict[str, Variable] = Field(default_factory=dict)
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    resources: Resources
    targets: dict[str, Target] = Field(default_factory=dict)


def references(document: Any) -> set[str]:
    """Every ${...} substitution anywhere in the document."""
    if isinstance(document, dict):
        return {ref for value in document.values() for ref in references(value)}
    if isinstance(document, list):
        return {ref for value in document for ref in references(value)}
    return set(SUBSTITUTION.findall(document)) if isinstance(document, str) else set()
