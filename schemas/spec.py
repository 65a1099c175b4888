"""The shape of a table declaration: the one contract between stages."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql.types import StructType


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: StructType
    key: tuple[str, ...]
    description: str
    partition_by: tuple[str, ...] = field(default_factory=tuple)

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.schema.fields]
