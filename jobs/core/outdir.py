"""A directory the driver writes files into: local, a Databricks volume, or an object store.

Through pyarrow.fs, which pyarrow (already a dependency) brings: S3 (s3://, s3a://),
GCS (gs://) and Azure (abfs://, abfss://) clients built in, each with its platform's
default credential chain (instance profile, workload identity, managed identity), and
no JVM, so it works through Spark Connect too. fsspec would need s3fs, gcsfs and adlfs
installed beside it on every cluster. /Volumes/... (Unity Catalog volumes) and dbfs:/
are local paths on a Databricks driver.

Local directories get each file under a temporary name, renamed into place when
complete; on object stores a PUT is already all-or-nothing, so files go to their names.
"""

from __future__ import annotations

import fnmatch
import io
import os
from collections.abc import Iterable
from typing import IO, Any

import pyarrow.fs as pafs

_S3_ALIASES = ("s3a://", "s3n://")


def _s3(uri: str) -> tuple[pafs.FileSystem, str]:
    """s3:// (and Hadoop's s3a://): AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL name another
    endpoint (MinIO, a local test server), as for every AWS SDK."""
    path = uri.split("://", 1)[1]
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        filesystem, found = pafs.FileSystem.from_uri("s3://" + path)  # looks up the bucket's region
        return filesystem, found
    scheme, _, host = endpoint.rpartition("://")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return pafs.S3FileSystem(endpoint_override=host, scheme=scheme or "https", region=region), path


def filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    """The file system and the path within it for a local path or a store URI."""
    if uri.startswith(("s3://", *_S3_ALIASES)):
        return _s3(uri)
    if uri.startswith("dbfs:/"):
        uri = "/dbfs/" + uri.removeprefix("dbfs:").lstrip("/")
    if "://" in uri:
        try:
            return pafs.FileSystem.from_uri(uri)
        except (pafs.ArrowInvalid, ValueError) as exc:  # type: ignore[attr-defined]
            raise ValueError(f"cannot write to {uri}: {exc}") from None
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri.removeprefix("file:")))


class OutDir:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.path = filesystem_of(self.uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def __str__(self) -> str:
        return self.uri

    def _at(self, name: str) -> str:
        return f"{self.path}/{name}"

    def prepare(self) -> None:
        if self.local:  # a store has no directories: pyarrow would PUT an empty marker object
            self.fs.create_dir(self.path, recursive=True)

    def remove_stale(self, patterns: Iterable[str], keep: Iterable[str]) -> None:
        """Delete files matching `patterns` other than `keep` (on a store, pyarrow then
        leaves a zero-byte `<dir>/` marker object, which readers take for the folder)."""
        patterns, kept = tuple(patterns), set(keep)
        for info in self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)):
            if (info.type == pafs.FileType.File and info.base_name not in kept
                    and any(fnmatch.fnmatch(info.base_name, p) for p in patterns)):
                self.fs.delete_file(info.path)

    def names(self) -> list[str]:
        return sorted(info.base_name for info in
                      self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)))

    def read_text(self, name: str) -> str:
        with self.fs.open_input_stream(self._at(name)) as stream:
            return stream.read().decode("utf-8")

    def staging_name(self, name: str) -> str:
        """Where `name` is written before `publish`: a hidden name locally, itself elsewhere."""
        return f".{name}.tmp" if self.local else name

    def open_binary(self, name: str) -> Any:
        return self.fs.open_output_stream(self._at(self.staging_name(name)))

    def open_text(self, name: str) -> IO[str]:
        return io.TextIOWrapper(self.open_binary(name), encoding="utf-8", newline="\n")

    def publish(self, name: str) -> None:
        if self.local:
            self.fs.move(self._at(self.staging_name(name)), self._at(name))

    def write_text(self, name: str, text: str) -> None:
        with self.open_binary(name) as stream:
            stream.write(text.encode("utf-8"))
        self.publish(name)
