"""Where downloaded videos are kept (``FILES_STORE``): one small protocol, stores chosen by URI scheme.

Downloads stream into a staging file on local disk (``store.staging_dir()``), hashing as they
go; a finished file is handed to ``store.persist(staged, path)``, which stores it under its
final relative ``path`` (``full/<sha256><ext>``) and returns its location: a local path, or the
object's URI. Like Scrapy's ``FILES_STORE`` table (``FSFilesStore``, ``S3FilesStore``,
``GCSFilesStore``), a store is picked by the scheme of ``FILES_STORE``:

- a path or ``file://``: ``FSFilesStore``, a folder (persisting is a rename);
- ``s3://bucket/prefix``: ``S3FilesStore`` (boto3/botocore, as Scrapy's; an S3-compatible server
  through ``AWS_ENDPOINT_URL``; credentials and region from the standard ``AWS_*`` variables);
- ``gs://bucket/prefix``: ``GCSFilesStore`` (google-cloud-storage; credentials from
  ``GOOGLE_APPLICATION_CREDENTIALS`` or the machine's, ``GOOGLE_CLOUD_PROJECT``,
  ``STORAGE_EMULATOR_HOST``).

A bucket store stages in a temporary folder of this process (under ``TMPDIR``), uploads on
``persist`` (skipped when the object is already there with the same size: names are content
addresses) and keeps the staged file as the object's local copy (``crawler.locations.hold``)
until the item is through the pipelines (``release``), so probe and phash read local bytes and
workers anywhere read the object. A store that cannot work fails when it is opened, at the start of the crawl, with one
sentence (``StorageError``): a missing package, or a bucket that does not answer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import import_module
from pathlib import Path
from typing import ClassVar, Protocol
from urllib.parse import unquote, urlsplit

from crawler import locations
from crawler.locations import StorageError

__all__ = ["FilesStore", "FSFilesStore", "S3FilesStore", "GCSFilesStore", "STORES", "StorageError", "open_store"]


class FilesStore(Protocol):
    """What the download pipeline needs of a store."""

    def staging_dir(self) -> Path:
        """A local folder (created) where downloads are written before they are complete."""

    def persist(self, staged: Path, path: str) -> str:
        """Store the complete file ``staged`` as ``path`` (relative); return its location."""

    def local_path(self, location: str) -> Path | None:
        """The local file of a location this store returned, or None if it has none."""

    def close(self) -> None:
        """Remove what the store keeps locally for this process (staging files)."""


class FSFilesStore:
    """A folder on a local (or mounted) file system; ``file://`` URIs too."""

    def __init__(self, uri: str):
        if uri.startswith("file://"):
            uri = unquote(urlsplit(uri).path)
        self.basedir = Path(uri).expanduser().absolute()

    def staging_dir(self) -> Path:
        path = self.basedir / "tmp"  # same file system as full/: persisting is a rename
        path.mkdir(parents=True, exist_ok=True)
        return path

    def persist(self, staged: Path, path: str) -> str:
        dest = self.basedir / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, dest)  # atomic; the same bytes under the same name are harmless
        return str(dest)

    def local_path(self, location: str) -> Path | None:
        return Path(location)

    def close(self) -> None:
        pass


class ObjectFilesStore:
    """A bucket prefix: staged locally, uploaded on ``persist``, the staged file held as the local copy."""

    scheme: ClassVar[str]
    service: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]  # modules the store imports (what `pip install` brings)

    def __init__(self, uri: str):
        parts = urlsplit(uri)
        if not parts.netloc:
            raise StorageError(f"FILES_STORE={uri!r} names no bucket ({self.scheme}://BUCKET/prefix)")
        self.uri, self.bucket, self.prefix = uri, parts.netloc, parts.path.strip("/")
        missing = [m for m in self.needs if not locations.installed(m)]
        if missing:
            raise StorageError(f"FILES_STORE={uri!r}: the {self.service} store needs the {', '.join(missing)} "
                               f"package(s), which are not installed (pip install -r requirements.txt)")  # fmt: skip
        locations.filesystem(uri)  # the readers' package (s3fs / gcsfs) is there too
        self._connect()
        problem = self._problem()
        if problem:
            raise StorageError(f"FILES_STORE={uri!r}: the {self.service} bucket {self.bucket!r} cannot be used "
                               f"({problem})")  # fmt: skip
        self._staging: Path | None = None

    def staging_dir(self) -> Path:
        if self._staging is None or not self._staging.is_dir():
            self._staging = Path(tempfile.mkdtemp(prefix=f"videopipe-{self.scheme}-staging-"))
        return self._staging

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def persist(self, staged: Path, path: str) -> str:
        key = self.key(path)
        uri = f"{self.scheme}://{self.bucket}/{key}"
        size = staged.stat().st_size
        try:
            if self._size(key) != size:  # the same name holds the same bytes: no second upload
                self._upload(staged, key)
        except Exception as exc:  # noqa: BLE001 - the pipeline records it as store_error
            raise OSError(f"upload to {uri} failed: {_brief(exc)}") from exc
        fd, name = tempfile.mkstemp(prefix="held-", suffix=Path(path).suffix, dir=self.staging_dir())
        os.close(fd)
        shutil.move(staged, name)  # out of the caller's staging file or folder, which it deletes
        locations.hold(uri, Path(name))
        return uri

    def local_path(self, location: str) -> Path | None:
        return locations.readable(location)

    def close(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    # -- per service ----------------------------------------------------------------------------
    def _connect(self) -> None:
        raise NotImplementedError

    def _problem(self) -> str | None:
        """Why the bucket cannot be used (it does not answer, is missing, refuses us), or None."""
        raise NotImplementedError

    def _size(self, key: str) -> int | None:
        """Bytes of the object ``key``, None when there is none."""
        raise NotImplementedError

    def _upload(self, local: Path, key: str) -> None:
        raise NotImplementedError


def _brief(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


class S3FilesStore(ObjectFilesStore):
    """``s3://bucket/prefix`` through boto3 (uploads in parts past 8 MB, as s3transfer does)."""

    scheme, service, needs = "s3", "S3", ("botocore", "boto3")

    def _connect(self) -> None:
        import boto3
        from botocore.config import Config

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
        # endpoint (AWS_ENDPOINT_URL), keys and session token: botocore reads the standard variables
        self.client = boto3.session.Session().client("s3", region_name=region, config=config)

    def _problem(self) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            return "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give the machine a role)"
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                return "no such bucket"
            if code in ("403", "AccessDenied", "Forbidden"):
                return "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            return _brief(exc)
        except BotoCoreError as exc:
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or self.client.meta.endpoint_url
            return f"no answer from {endpoint}: {_brief(exc)}; check AWS_ENDPOINT_URL and the network"
        return None

    def _size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError:  # 404; or 403, what S3 answers for a missing key without s3:ListBucket
            return None

    def _upload(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, key)


class GCSFilesStore(ObjectFilesStore):
    """``gs://bucket/prefix`` through google-cloud-storage (resumable uploads past 8 MB)."""

    scheme, service, needs = "gs", "GCS", ("google.cloud.storage",)

    def _connect(self) -> None:
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

        try:  # credentials: GOOGLE_APPLICATION_CREDENTIALS or the machine's; none with STORAGE_EMULATOR_HOST
            self.client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
        except DefaultCredentialsError as exc:
            raise StorageError(f"FILES_STORE={self.uri!r}: no Google credentials ({_brief(exc)}); set "
                               f"GOOGLE_APPLICATION_CREDENTIALS") from exc  # fmt: skip
        self._bucket = self.client.bucket(self.bucket)

    def _problem(self) -> str | None:
        from google.api_core import exceptions

        try:
            self.client.get_bucket(self.bucket, timeout=15, retry=None)
        except exceptions.NotFound:
            return "no such bucket"
        except exceptions.Forbidden:
            return "access denied: check GOOGLE_APPLICATION_CREDENTIALS"
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, TLS...
            endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"
            return f"no answer from {endpoint}: {_brief(exc)}"
        return None

    def _size(self, key: str) -> int | None:
        from google.api_core import exceptions

        try:
            blob = self._bucket.get_blob(key)
        except exceptions.Forbidden:  # may write, may not read: upload
            return None
        return int(blob.size) if blob is not None and blob.size is not None else None

    def _upload(self, local: Path, key: str) -> None:
        self._bucket.blob(key).upload_from_filename(str(local))


# scheme -> "module:Class"; "" is a plain path
STORES = {"": "pipelines.stores:FSFilesStore", "file": "pipelines.stores:FSFilesStore",
          "s3": "pipelines.stores:S3FilesStore", "gs": "pipelines.stores:GCSFilesStore"}  # fmt: skip


def open_store(uri: str) -> FilesStore:
    """The store for ``FILES_STORE``; ``ValueError`` (``StorageError`` for a bucket) when it cannot serve."""
    if not uri:
        raise ValueError("FILES_STORE must be set (a folder, or a URI a store in pipelines.stores.STORES serves)")
    scheme = urlsplit(uri).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    target = STORES.get(scheme)
    if target is None:
        raise ValueError(f"FILES_STORE={uri!r}: no store for {scheme}:// (known: {sorted(s for s in STORES if s)})")
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)(uri)
