"""How a configuration differs from the published recipe (conf/profiles/published.yaml):
what the dataset card records, so a dataset says which of our alternatives made it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jobs.core.config import WHOLE_TABLES, PipelineConfig, profile_path, read_mapping

PUBLISHED = "published"
# What makes the data; the published profile's evaluate section describes how a model
# is scored, not how its data was made.
DATA_SECTIONS = ("extract", "decontaminate", "typecheck", "lsh", "dedup", "generation", "sandbox", "select")
# Departures no setting undoes: the stage order (jobs/core/registry.py), whatever the config.
FIXED_DEVIATIONS: tuple[dict[str, Any], ...] = (
    {"key": "stage order: dedup",
     "published": "right after extraction, before every filter (seed_gathering/README.md:19): one "
                  "function per cluster of all documented ones; a cluster whose kept one fails a "
                  "later filter is lost whole",
     "used": "after decontaminate and typecheck: clusters of the functions that passed every "
             "filter, one kept per cluster, so as many seeds or more"},
)


def _leaves(tree: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        here = (*path, str(key))
        if isinstance(value, Mapping) and here not in WHOLE_TABLES:
            yield from _leaves(value, here)
        else:
            yield here, value


def _value(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree.get(key) if isinstance(tree, Mapping) else None
    return tree


def deviations(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """Each setting of the published profile that `cfg` sets otherwise: key, published, used;
    then the FIXED_DEVIATIONS, which every configuration has."""
    published = read_mapping(profile_path(PUBLISHED), "profile")
    used = cfg.model_dump(mode="json")
    settings = [{"key": ".".join(path), "published": value, "used": _value(used, path)}
                for path, value in _leaves(published)
                if path[0] in DATA_SECTIONS and _value(used, path) != value]
    return [*settings, *(dict(fixed) for fixed in FIXED_DEVIATIONS)]


def recipe(cfg: PipelineConfig) -> dict[str, Any]:
    """dataset_info's `recipe`: the reference profile and this configuration's departures."""
    return {"reference": f"conf/profiles/{PUBLISHED}.yaml", "deviations": deviations(cfg)}
