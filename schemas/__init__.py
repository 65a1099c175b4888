"""Every Delta table of the lake, declared once.

Stage modules import their specs from here; `TABLES` is what `status`, the lake
bootstrap and the docs iterate over.
"""

from schemas.evaluation import EVAL_RESULTS, EVAL_SAMPLES
from schemas.functions import FUNCTIONS
from schemas.generation import CONCEPTS, INSTRUCTIONS, QUALITY, RESPONSES
from schemas.ledger import ERRORS, INPUTS, PROGRESS, REJECTS, RUNS
from schemas.seeds import CLUSTERS, DECONTAMINATION, MINHASHES, TYPECHECK
from schemas.sft import EXECUTIONS, SFT
from schemas.spec import TableSpec
from schemas.training import TRAIN_RUNS

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        RUNS,
        REJECTS,
        PROGRESS,
        ERRORS,
        INPUTS,
        FUNCTIONS,
        DECONTAMINATION,
        TYPECHECK,
        MINHASHES,
        CLUSTERS,
        QUALITY,
        CONCEPTS,
        INSTRUCTIONS,
        RESPONSES,
        EXECUTIONS,
        SFT,
        EVAL_SAMPLES,
        EVAL_RESULTS,
        TRAIN_RUNS,
    )
}

__all__ = [
    "CLUSTERS", "CONCEPTS", "DECONTAMINATION", "ERRORS", "EVAL_RESULTS", "EVAL_SAMPLES", "EXECUTIONS", "FUNCTIONS", "INPUTS", "INSTRUCTIONS", "MINHASHES", "PROGRESS", "QUALITY", "REJECTS", "RESPONSES", "RUNS", "SFT",
    "TABLES", "TRAIN_RUNS", "TYPECHECK", "TableSpec",
]
