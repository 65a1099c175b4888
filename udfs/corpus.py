"""Build the sample corpus: real Python files from this machine, in The Stack v1 layout.

The pipeline's input is The Stack v1 Python parquet. Tests and local runs need a
corpus of the same shape that is small, real (not generated), license-clean and
reproducible, so this module samples the Python files already on the machine:
CPython's standard library and the distributions installed in the running
interpreter's site-packages.

Columns follow The Stack v1 (the subset the pipeline reads). Some have no real
value here and get deterministic stand-ins, so reruns are stable:

- `max_stars_repo_name`: "python/cpython" for the stdlib, "pypi/<normalized name>"
  for installed distributions.
- `max_stars_repo_head_hexsha`: sha1 of "<repo>@<version>", not a real commit.
- `max_stars_count`: SYNTHETIC, `int(sha1(repo)[:8], 16) % 5000`. There are no
  stars for local files; the number only exercises code that orders by stars.

Plain Python plus pyarrow, no Spark: the corpus is built before any Spark job runs.
"""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import random
import re
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

STDLIB_REPO = "python/cpython"
STDLIB_LICENSES = ("PSF-2.0",)
NO_LICENSE = "NOASSERTION"
# The project itself is installed (editable) into the same site-packages; sampling
# its own, still-changing files would make the corpus depend on the working tree.
OWN_DISTRIBUTIONS = frozenset({"selfalign"})
# Test suites, the IDLE app and nested site-packages are not library code.
STDLIB_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "idlelib", "site-packages", "dist-packages", "__pycache__"}
)
SYNTHETIC_STARS_MODULO = 5000
# Small row groups let readers stream the corpus instead of holding every file at once.
ROW_GROUP_ROWS = 500

# Column order and types of The Stack v1 Python parquet (the columns the pipeline reads).
# Nullable like the published files, so readers see the same schema from both.
STACK_SCHEMA = pa.schema(
    [
        pa.field("hexsha", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("ext", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("max_stars_repo_path", pa.string()),
        pa.field("max_stars_repo_name", pa.string()),
        pa.field("max_stars_repo_head_hexsha", pa.string()),
        pa.field("max_stars_repo_licenses", pa.list_(pa.string())),
        pa.field("max_stars_count", pa.int64()),
        pa.field("content", pa.string()),
        pa.field("avg_line_length", pa.float64()),
        pa.field("max_line_length", pa.int64()),
        pa.field("alphanum_fraction", pa.float64()),
    ]
)

# Trove license classifiers (the part after the last "::") -> SPDX ids.
# The generic "BSD License" classifier does not say which BSD; 3-clause is by far
# the most common among packages that use it (numpy, scipy, pandas) and both are permissive.
CLASSIFIER_SPDX = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "BSD License": "BSD-3-Clause",
    "Apache Software License": "Apache-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "ISC License (ISCL)": "ISC",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "GNU General Public License (GPL)": "GPL",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "zlib/libpng License": "Zlib",
    "Zope Public License": "ZPL-2.1",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "Universal Permissive License (UPL)": "UPL-1.0",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}
MAX_LICENSE_FIELD_CHARS = 40
# Old setuptools wrote this placeholder when a package declared no license.
LICENSE_PLACEHOLDERS = frozenset({"", "UNKNOWN", "NONE"})
_EXPRESSION_SPLIT = re.compile(r"\s+(?:AND|OR)\s+")


class MetadataLike(Protocol):
    """The part of a package's core metadata (an email.message.Message) we read."""

    def get(self, name: str, failobj: Any = None) -> Any: ...

    def get_all(self, name: str, failobj: Any = None) -> Any: ...


class DistributionLike(Protocol):
    @property
    def metadata(self) -> Any: ...


@dataclass(frozen=True)
class SampleStats:
    files: int
    bytes: int
    repos: int


@dataclass(frozen=True)
class Source:
    """One Python file on disk and the repository it stands for."""

    repo: str
    path: str  # relative to the repo root, POSIX separators
    file: Path
    version: str
    licenses: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    source: Source
    hexsha: str


# ---- per-file values -------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    """The id git gives this content (`git hash-object`), as The Stack's `hexsha`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def line_stats(text: str) -> tuple[float, int, float]:
    """(avg line length, max line length, alphanumeric fraction), as The Stack computes them.

    Lines come from `str.splitlines()` (terminators excluded); empty text gives zeros
    rather than a division error.
    """
    lengths = [len(line) for line in text.splitlines()]
    avg = sum(lengths) / len(lengths) if lengths else 0.0
    longest = max(lengths, default=0)
    alnum = sum(ch.isalnum() for ch in text) / len(text) if text else 0.0
    return avg, longest, alnum


def repo_head_hexsha(repo: str, version: str) -> str:
    """Stand-in for the repository's head commit: stable per repo and version."""
    return hashlib.sha1(f"{repo}@{version}".encode()).hexdigest()


def synthetic_stars(repo: str) -> int:
    """SYNTHETIC star count (no stars exist for local files); stable per repo."""
    return int(hashlib.sha1(repo.encode()).hexdigest()[:8], 16) % SYNTHETIC_STARS_MODULO


# ---- licenses --------------------------------------------------------------------


def split_license_expression(expression: str) -> list[str]:
    """SPDX expression -> its license ids, like The Stack's list of detected licenses.

    "(Apache-2.0 OR BSD-2-Clause)" -> ["Apache-2.0", "BSD-2-Clause"]; a `WITH`
    exception stays attached to its license.
    """
    parts = (part.strip(" ()") for part in _EXPRESSION_SPLIT.split(expression.strip()))
    return _unique(part for part in parts if part)


def classifier_licenses(classifiers: Iterable[str]) -> list[str]:
    names = (c.rsplit("::", 1)[-1].strip() for c in classifiers if c.startswith("License ::"))
    return _unique(CLASSIFIER_SPDX[name] for name in names if name in CLASSIFIER_SPDX)


def license_of(dist: DistributionLike) -> list[str]:
    """Licenses of an installed distribution, best source first.

    License-Expression (PEP 639) > a short one-line License field > Trove license
    classifiers > ["NOASSERTION"]. Long License fields are usually the whole
    license text, which says nothing a reader could filter on.
    """
    meta: MetadataLike = dist.metadata
    expression = _clean(meta.get("License-Expression"))
    if expression:
        return split_license_expression(expression)
    field = _clean(meta.get("License"))
    if field and len(field) <= MAX_LICENSE_FIELD_CHARS and "\n" not in field:
        # Some packages put a Trove name ("BSD License") where an id belongs.
        return [CLASSIFIER_SPDX[field]] if field in CLASSIFIER_SPDX else split_license_expression(field)
    from_classifiers = classifier_licenses(meta.get_all("Classifier") or [])
    return from_classifiers or [NO_LICENSE]


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return None if text.upper() in LICENSE_PLACEHOLDERS else text


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---- sources ---------------------------------------------------------------------


def normalize_dist_name(name: str) -> str:
    """PEP 503 normalized project name (what pip and PyPI URLs use)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def stdlib_sources(root: Path | None = None) -> Iterator[Source]:
    root = root or Path(sysconfig.get_paths()["stdlib"])
    version = platform.python_version()
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk descending; sorting keeps the walk order stable.
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                file = Path(dirpath) / name
                yield Source(STDLIB_REPO, file.relative_to(root).as_posix(), file, version,
                             STDLIB_LICENSES)


def site_packages_dirs() -> set[Path]:
    paths = sysconfig.get_paths()
    return {Path(paths[key]).resolve() for key in ("purelib", "platlib")}


def package_sources(site_dirs: set[Path] | None = None) -> Iterator[Source]:
    """Python files of the distributions installed in this interpreter's site-packages."""
    site_dirs = site_dirs or site_packages_dirs()
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = normalize_dist_name(dist.metadata["Name"] or "")
        base = Path(str(dist.locate_file(""))).resolve()
        # distributions() also scans sys.path entries such as the working directory.
        if not name or name in seen or name in OWN_DISTRIBUTIONS or base not in site_dirs:
            continue
        seen.add(name)
        yield from _dist_sources(dist, name, base)


def _dist_sources(dist: metadata.Distribution, name: str, base: Path) -> Iterator[Source]:
    repo = f"pypi/{name}"
    # Each metadata access re-parses METADATA (some are 100 KB of README): read it once.
    version = dist.version
    licenses = tuple(license_of(dist))
    for rel in installed_files(dist):
        # ".." entries are scripts installed outside site-packages; __editable__
        # finders are generated by pip and hold this machine's absolute paths.
        if not rel.endswith(".py") or ".." in rel.split("/") or rel.startswith("__editable__"):
            continue
        yield Source(repo, rel, base / rel, version, licenses)


def installed_files(dist: metadata.Distribution) -> list[str]:
    """Paths a distribution installed, relative to site-packages, POSIX separators.

    RECORD is read directly: `dist.files` builds a PackagePath per entry, which
    took most of a small build's time. Old egg-info installs have no RECORD.
    """
    record = dist.read_text("RECORD")
    if record is None:
        return [packaged.as_posix() for packaged in dist.files or []]
    return [row[0] for row in csv.reader(record.splitlines()) if row]


# ---- selection -------------------------------------------------------------------


def read_eligible(file: Path, max_file_bytes: int) -> bytes | None:
    """The file's bytes if it is UTF-8 and at most max_file_bytes, else None."""
    try:
        if file.stat().st_size > max_file_bytes:
            return None  # stat first: no need to read a huge file to reject it
        data = file.read_bytes()
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return data if len(data) <= max_file_bytes else None


def eligible_candidates(sources: Iterable[Source], max_file_bytes: int) -> list[Candidate]:
    """Eligible files in (repo, path) order, one per distinct content (first one wins)."""
    kept: dict[str, Candidate] = {}
    for source in sorted(sources, key=lambda s: (s.repo, s.path)):
        data = read_eligible(source.file, max_file_bytes)
        if data is None:
            continue
        hexsha = git_blob_sha1(data)
        kept.setdefault(hexsha, Candidate(source, hexsha))
    return list(kept.values())


def choose(candidates: Sequence[Candidate], files: int, seed: int) -> list[Candidate]:
    """A seeded sample of `files` candidates (all of them if there are fewer)."""
    if files >= len(candidates):
        return list(candidates)
    return random.Random(seed).sample(list(candidates), files)


def stack_row(candidate: Candidate) -> dict[str, Any]:
    source = candidate.source
    data = source.file.read_bytes()
    # The file was hashed moments ago; a different hash means it changed under us,
    # and writing it would break the hexsha == content contract.
    if git_blob_sha1(data) != candidate.hexsha:
        raise RuntimeError(f"sample: {source.file} changed while the corpus was being built")
    content = data.decode("utf-8")
    avg, longest, alnum = line_stats(content)
    return {
        "hexsha": candidate.hexsha,
        "size": len(data),
        "ext": "py",
        "lang": "Python",
        "max_stars_repo_path": source.path,
        "max_stars_repo_name": source.repo,
        "max_stars_repo_head_hexsha": repo_head_hexsha(source.repo, source.version),
        "max_stars_repo_licenses": list(source.licenses),
        "max_stars_count": synthetic_stars(source.repo),
        "content": content,
        "avg_line_length": avg,
        "max_line_length": longest,
        "alphanum_fraction": alnum,
    }


def write_parquet(table: pa.Table, out: Path) -> None:
    # Write beside the target and rename, so a crash never leaves half a corpus behind.
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, partial, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    partial.replace(out)


def build_sample(out: str | Path, files: int, seed: int, max_file_bytes: int) -> SampleStats:
    """Write `files` sampled Python files as one Stack-v1-shaped parquet file at `out`.

    Same machine (same Python and installed packages) + same seed => the same rows.
    """
    sources = [*stdlib_sources(), *package_sources()]
    chosen = choose(eligible_candidates(sources, max_file_bytes), files, seed)
    rows = sorted((stack_row(c) for c in chosen), key=lambda row: row["hexsha"])
    write_parquet(pa.Table.from_pylist(rows, schema=STACK_SCHEMA), Path(out))
    return SampleStats(
        files=len(rows),
        bytes=sum(row["size"] for row in rows),
        repos=len({row["max_stars_repo_name"] for row in rows}),
    )
