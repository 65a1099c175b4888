"""Build The Stack v1 style rows and parquet files for tests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from udfs.corpus import STACK_SCHEMA


def stack_row(content: str | None, path: str = "pkg/mod.py", repo: str = "acme/tools",
              stars: int | None = 5, lang: str = "Python", hexsha: str | None = None) -> dict[str, Any]:
    data = (content or "").encode("utf-8", errors="surrogatepass")
    sha = hexsha or hashlib.sha1(b"blob %d\0" % len(data) + data + path.encode()).hexdigest()
    return {
        "hexsha": sha, "size": len(data), "ext": "py", "lang": lang,
        "max_stars_repo_path": path, "max_stars_repo_name": repo,
        "max_stars_repo_head_hexsha": "0" * 40, "max_stars_repo_licenses": ["MIT"],
        "max_stars_count": stars, "content": content, "avg_line_length": 0.0,
        "max_line_length": 0, "alphanum_fraction": 0.0,
    }


def write_stack(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=STACK_SCHEMA), path)
    return path
