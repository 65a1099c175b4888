"""Every Delta table of the lake, declared once.

Stage modules import their specs from here; `TABLES` is what `status`, the lake
bootstrap and the docs iterate over.

The specs are pyspark types, loaded on first use (PEP 562): `schemas.outcome`, the
outcome vocabulary, is imported where pyspark may be missing (the CLI's own checks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.evaluation import EVAL_RESULTS, EVAL_SAMPLES
    from schemas.functions import FUNCTIONS
    from schemas.generation import CONCEPTS, INSTRUCTIONS, QUALITY, RESPONSES
    from schemas.ledger import ERRORS, INPUTS, PROGRESS, REJECTS, RUNS
    from schemas.seeds import CLUSTERS, DECONTAMINATION, MINHASHES, TYPECHECK
    from schemas.sft import EXECUTIONS, SFT
    from schemas.spec import TableSpec
    from schemas.training import TRAIN_RUNS

# Each table in `TABLES` order, with the module that declares it.
_DECLARED = (
    ("RUNS", "ledger"), ("REJECTS", "ledger"), ("PROGRESS", "ledger"), ("ERRORS", "ledger"),
    ("INPUTS", "ledger"), ("FUNCTIONS", "functions"), ("DECONTAMINATION", "seeds"),
    ("TYPECHECK", "seeds"), ("MINHASHES", "seeds"), ("CLUSTERS", "seeds"), ("QUALITY", "generation"),
    ("CONCEPTS", "generation"), ("INSTRUCTIONS", "generation"), ("RESPONSES", "generation"),
    ("EXECUTIONS", "sft"), ("SFT", "sft"), ("EVAL_SAMPLES", "evaluation"),
    ("EVAL_RESULTS", "evaluation"), ("TRAIN_RUNS", "training"),
)
_HOME = {name: f"schemas.{module}" for name, module in _DECLARED} | {"TableSpec": "schemas.spec"}


def __getattr__(name: str) -> Any:
    if name == "TABLES":
        tables = {spec.name: spec for spec in (__getattr__(table) for table, _ in _DECLARED)}
        globals()["TABLES"] = tables
        return tables
    if name not in _HOME:
        raise AttributeError(f"module 'schemas' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


TABLES: dict[str, TableSpec]

__all__ = [
    "CLUSTERS", "CONCEPTS", "DECONTAMINATION", "ERRORS", "EVAL_RESULTS", "EVAL_SAMPLES", "EXECUTIONS", "FUNCTIONS", "INPUTS", "INSTRUCTIONS", "MINHASHES", "PROGRESS", "QUALITY", "REJECTS", "RESPONSES", "RUNS", "SFT",
    "TABLES", "TRAIN_RUNS", "TYPECHECK", "TableSpec",
]
