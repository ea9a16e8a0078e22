"""Object storage for the tests: STAND-INS on loopback, not S3 and not GCS.

- S3: moto's S3 server (``moto.server.ThreadedMotoServer``, the stand-in s3fs's own test suite
  uses), reached through ``AWS_ENDPOINT_URL`` with dummy keys.
- GCS: ``gcp-storage-emulator``, a stub of the GCS JSON API, reached through
  ``STORAGE_EMULATOR_HOST`` (the variable google-cloud-storage and gcsfs read).

Both servers start once per session in this process, on 127.0.0.1 (subprocesses reach them by
the environment variables the fixtures set), and are emptied before every test that uses them.
Neither checks credentials or implements every behaviour of the real service (consistency,
multipart limits, IAM); what passes here is the project's code path against the APIs' wire
format. Fixtures: ``s3`` and ``gcs`` (a ``Buckets`` each), ``buckets`` (parametrised over both).
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STAND_IN = {"s3": "moto's S3 server (a stand-in, not S3)", "gs": "gcp-storage-emulator (a stand-in, not GCS)"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clear_fsspec_caches() -> None:
    """Forget cached file system instances and listings (a server emptied between tests)."""
    import gcsfs.core
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    gcsfs.core.GCSFileSystem.clear_instance_cache()
    try:
        from gcsfs.extended_gcsfs import ExtendedGcsFileSystem

        ExtendedGcsFileSystem.clear_instance_cache()
    except ImportError:
        pass


@dataclass
class Buckets:
    """One stand-in's buckets: make them, put and read objects, list keys (through the vendors' clients)."""

    scheme: str
    env: dict[str, str]
    client: object = field(repr=False)

    @property
    def stand_in(self) -> str:
        return STAND_IN[self.scheme]

    def make(self, name: str) -> str:
        if self.scheme == "s3":
            self.client.create_bucket(Bucket=name)
        else:
            self.client.create_bucket(name)
        return f"{self.scheme}://{name}"

    def put(self, local: Path | bytes, bucket: str, key: str) -> str:
        data = local if isinstance(local, bytes) else Path(local).read_bytes()
        if self.scheme == "s3":
            self.client.put_object(Bucket=bucket, Key=key, Body=data)
        else:
            self.client.bucket(bucket).blob(key).upload_from_string(data)
        return f"{self.scheme}://{bucket}/{key}"

    def read(self, bucket: str, key: str) -> bytes:
        if self.scheme == "s3":
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return self.client.bucket(bucket).blob(key).download_as_bytes()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        if self.scheme == "s3":
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        return sorted(b.name for b in self.client.list_blobs(bucket, prefix=prefix))


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3 server on loopback for the session: its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch) -> Buckets:
    """S3 on the stand-in, emptied; the AWS_* variables set for this process and its children."""
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10)
    clear_fsspec_caches()
    import boto3

    yield Buckets("s3", env, boto3.client("s3"))
    clear_fsspec_caches()


@pytest.fixture(scope="session")
def gcs_server():
    """gcp-storage-emulator on loopback for the session: (server, its URL)."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def gcs(gcs_server, monkeypatch) -> Buckets:
    """GCS on the stand-in, emptied; STORAGE_EMULATOR_HOST and a project set, no credentials."""
    server, url = gcs_server
    env = {"STORAGE_EMULATOR_HOST": url, "GOOGLE_CLOUD_PROJECT": "test", "NO_GCE_CHECK": "true"}
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server.wipe()
    clear_fsspec_caches()
    from google.cloud import storage

    yield Buckets("gs", env, storage.Client(project="test"))
    clear_fsspec_caches()


@pytest.fixture(params=["s3", "gs"])
def buckets(request) -> Buckets:
    """Each stand-in in turn."""
    return request.getfixturevalue("s3" if request.param == "s3" else "gcs")
