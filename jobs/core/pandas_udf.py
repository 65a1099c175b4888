"""A typed wrapper of F.pandas_udf: PySpark's overloads reject functions annotated with
plain `pd.Series`, so every call site would need an ignore comment; this needs one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import DataType


def series_udf(function: Callable[..., pd.Series | pd.DataFrame], return_type: DataType) -> Callable[..., Column]:
    """A vectorized (Series -> Series, or -> DataFrame for a struct) UDF, called on Columns."""
    udf: Any = F.pandas_udf(function, return_type)  # pyright: ignore[reportCallIssue, reportArgumentType]
    return cast(Callable[..., Column], udf)
