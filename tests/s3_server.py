"""A real S3 API on 127.0.0.1 for the object-storage tests: moto's server mode (a separate
process speaking the S3 REST protocol, with If-None-Match conditional writes), reached by
Spark through hadoop-aws's S3A and by the export through pyarrow's S3 client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ACCESS_KEY = "selfalign-test"
SECRET_KEY = "selfalign-test-secret"  # moto accepts any pair; no real credential exists here
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server with the AWS default credential chain."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": REGION, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def s3a_settings(self, bucket: str) -> dict[str, str]:
        """Per-bucket S3A settings (fs.s3a.bucket.<b>.*): tests of other buckets are untouched."""
        prefix = f"fs.s3a.bucket.{bucket}."
        return {prefix + "endpoint": self.endpoint, prefix + "path.style.access": "true",
                prefix + "endpoint.region": REGION, prefix + "access.key": ACCESS_KEY,
                prefix + "secret.key": SECRET_KEY, prefix + "connection.ssl.enabled": "false"}

    def spark_extra(self, bucket: str) -> dict[str, str]:
        return {f"spark.hadoop.{key}": value for key, value in self.s3a_settings(bucket).items()}

    def client(self):  # boto3 comes with moto, the test extra's
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def new_bucket(self, spark=None) -> str:
        """A fresh bucket; with a classic session, its S3A settings set on it."""
        bucket = f"lake-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        if spark is not None:
            conf = spark.sparkContext._jsc.hadoopConfiguration()
            for key, value in self.s3a_settings(bucket).items():
                conf.set(key, value)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[S3Server]:
    port = _free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)
