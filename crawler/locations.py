"""Video bytes addressed by a location: a local path, a ``file://`` URI, or an object ``s3://`` / ``gs://``.

Every stage that reads or writes bytes goes through here, so a video kept in a bucket is read
where it lies and nothing assumes a shared disk:

- ``local_file(location)``: the local path of a path or ``file://`` URI (None for an object).
- ``filesystem(uri)``: the fsspec file system of an object URI (``s3fs`` for ``s3://``, ``gcsfs``
  for ``gs://``) and the path inside it. A missing package is a ``StorageError`` naming it.
- ``open_input(location)``: a binary file-like, local or remote; an object is read by ranged
  GETs as the reader seeks (PyAV reads an MP4's ``moov`` box without reading ``mdat``).
- ``size``, ``walk`` (listing a prefix), ``heads`` (the first bytes of many objects, fetched
  concurrently), ``put_file``, ``open_output``, ``remove``, ``check`` (the bucket answers).
- ``hold(uri, path)`` / ``release(uri)``: a local copy of an object this process just wrote
  (the crawl keeps a download's staged file while probe and phash read it); ``readable``
  prefers it, so the bytes are not fetched back from the bucket.

Configuration comes only from the standard variables that botocore and the Google libraries read
themselves: ``AWS_ENDPOINT_URL`` (an S3-compatible server), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``;
``GOOGLE_APPLICATION_CREDENTIALS``, ``GOOGLE_CLOUD_PROJECT`` and ``STORAGE_EMULATOR_HOST`` (a GCS
API emulator: no credentials, the JSON API only). Failures to read one video are
``MediaError`` (``missing_file``, ``unreadable``, ``empty_file``); configuration that cannot
work (a missing package, a bucket that does not answer) is ``StorageError``, raised at start.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from crawler.errors import MediaError

# scheme -> (the fsspec package that reads it, what to install)
REMOTE_SCHEMES = {"s3": ("s3fs", "s3fs and boto3/botocore"), "gs": ("gcsfs", "gcsfs and google-cloud-storage"),
                  "gcs": ("gcsfs", "gcsfs and google-cloud-storage")}  # fmt: skip
BLOCK_BYTES = 2 * 1024 * 1024  # one ranged GET reads this much ahead (s3fs' default is 50 MiB)


class StorageError(ValueError):
    """Object storage that cannot serve at all: a missing package, a bucket that does not answer."""


def scheme_of(location: str) -> str:
    """``s3``, ``gs``, ``file``... or ``""`` for a plain path (a Windows drive letter is a path)."""
    scheme = urlsplit(location).scheme.lower() if "://" in location else ""
    return "" if len(scheme) == 1 else scheme


def is_remote(location: str | os.PathLike | None) -> bool:
    """True for an object URI (``s3://``, ``gs://``)."""
    return isinstance(location, str) and scheme_of(location) in REMOTE_SCHEMES


def local_file(location: str | os.PathLike | None) -> Path | None:
    """The local path a path or ``file://`` URI names (it may not exist); None for anything else."""
    if location is None or location == "":
        return None
    if not isinstance(location, str):
        return Path(location)
    scheme = scheme_of(location)
    if scheme == "file":
        return Path(unquote(urlsplit(location).path))
    return Path(location) if scheme == "" else None


# --- local copies of objects this process wrote -------------------------------------------------
_held: dict[str, list] = {}  # uri -> [local path, holders]
_held_lock = threading.Lock()


def hold(uri: str, path: Path) -> None:
    """Keep ``path`` as a local copy of the object ``uri`` until as many ``release`` calls as holds.

    A second hold of the same object (two downloads of the same bytes at once) deletes its own
    file and shares the first one.
    """
    path = Path(path)
    with _held_lock:
        entry = _held.get(uri)
        if entry is None or not entry[0].is_file():
            _held[uri] = [path, (entry[1] if entry else 0) + 1]
            return
        entry[1] += 1
    if path != entry[0]:
        path.unlink(missing_ok=True)


def release(uri: str | None) -> None:
    """Drop one hold of ``uri``; the last one deletes the local copy (nothing when none is held)."""
    with _held_lock:
        entry = _held.get(uri) if uri else None
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[uri]
    entry[0].unlink(missing_ok=True)


def readable(location: str | os.PathLike) -> Path | None:
    """A local file with the bytes of ``location``: its own path, or a held copy of the object."""
    path = local_file(location)
    if path is not None:
        return path
    with _held_lock:
        entry = _held.get(str(location))
    return entry[0] if entry is not None and entry[0].is_file() else None


# --- object file systems -------------------------------------------------------------------------
def _options(scheme: str) -> dict:
    """What fsspec needs beyond what botocore / google-auth read from the environment themselves."""
    if scheme == "s3":
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return {"client_kwargs": {"region_name": region}} if region else {}
    options = {}
    if os.environ.get("GOOGLE_CLOUD_PROJECT"):
        options["project"] = os.environ["GOOGLE_CLOUD_PROJECT"]
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        options["token"] = "anon"  # an emulator takes no credentials (as google-cloud-storage does)
    return options


def installed(module: str) -> bool:
    """Whether ``module`` imports (a package missing, or broken, answers False)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def filesystem(uri: str):
    """``(fsspec file system, path inside it)`` for an object URI; ``StorageError`` if it cannot be read."""
    scheme = scheme_of(uri)
    if scheme not in REMOTE_SCHEMES:
        raise StorageError(f"{uri!r} is no object URI (known: {', '.join(s + '://' for s in REMOTE_SCHEMES)})")
    package, install = REMOTE_SCHEMES[scheme]
    if not installed(package):
        raise StorageError(f"{uri}: reading {scheme}:// needs the {install} packages, which are not installed "
                           f"(pip install -r requirements.txt)")  # fmt: skip
    if scheme in ("gs", "gcs") and os.environ.get("STORAGE_EMULATOR_HOST"):
        # an emulator serves the JSON API only: gcsfs' default class also asks the gRPC control API
        from gcsfs.core import GCSFileSystem

        fs = GCSFileSystem(**_options("gs"))
        return fs, fs._strip_protocol(uri)
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri, **_options(scheme))
    except ImportError as exc:
        raise StorageError(f"{uri}: reading {scheme}:// needs the {install} packages ({exc})") from exc


def bucket_of(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.netloc:
        raise StorageError(f"{uri!r} names no bucket ({parts.scheme}://BUCKET/prefix)")
    return parts.netloc


def check(uri: str) -> None:
    """Raise ``StorageError`` (one sentence) unless the bucket of ``uri`` answers a listing."""
    fs, _ = filesystem(uri)
    bucket = bucket_of(uri)
    try:
        fs.ls(bucket, detail=False)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store cannot serve
        endpoint = os.environ.get("AWS_ENDPOINT_URL") if scheme_of(uri) == "s3" else os.environ.get(
            "STORAGE_EMULATOR_HOST")  # fmt: skip
        where = f" at {endpoint}" if endpoint else ""
        raise StorageError(f"{uri}: the bucket {bucket!r} cannot be read{where} "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc


def _media_error(location: str, exc: Exception) -> MediaError:
    if isinstance(exc, MediaError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return MediaError("missing_file", f"no such object: {location}"[:300])
    return MediaError("unreadable", f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300])


def open_input(location: str | os.PathLike, block_size: int = BLOCK_BYTES):
    """A binary file-like with the bytes of ``location`` (local file, held copy, or object)."""
    local = readable(location)
    if local is not None:
        try:
            return open(local, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError as exc:
            raise MediaError("missing_file", str(exc)) from exc
        except OSError as exc:
            raise MediaError("unreadable", str(exc)) from exc
    try:
        fs, path = filesystem(str(location))
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")
    except StorageError as exc:
        raise MediaError("unreadable", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a missing object, a network error: recorded on the item
        raise _media_error(str(location), exc) from exc


def size(location: str | os.PathLike) -> int:
    """Bytes of the file or object; ``MediaError`` (``missing_file``, ``unreadable``) when it cannot be seen."""
    local = readable(location)
    try:
        if local is not None:
            return local.stat().st_size
        fs, path = filesystem(str(location))
        info = fs.info(path)
        if info.get("type") == "directory":
            raise FileNotFoundError(path)
        return int(info.get("size") or 0)
    except StorageError as exc:
        raise MediaError("unreadable", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001
        raise _media_error(str(location), exc) from exc


def is_file(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.isfile(path)


def walk(uri: str) -> Iterator[list[tuple[str, int]]]:
    """The objects under the prefix ``uri``, one "folder" at a time: ``[(object URI, bytes), ...]`` sorted.

    Keys ending in ``/`` (folder markers) are left out. Raises what the file system raises.
    """
    fs, root = filesystem(uri)
    scheme = scheme_of(uri)
    for folder, _dirs, files in fs.walk(root.rstrip("/"), detail=True):
        batch = []
        for name, info in sorted(files.items()):
            key = info.get("name") or f"{folder}/{name}"
            if key.endswith("/"):
                continue
            batch.append((f"{scheme}://{key}", int(info.get("size") or 0)))
        if batch:
            yield batch


def heads(uris: list[str], n: int) -> list[bytes | Exception]:
    """The first ``n`` bytes of each object, fetched concurrently; an exception in place of a failed one."""
    if not uris:
        return []
    fs, _ = filesystem(uris[0])
    paths = [fs._strip_protocol(u) for u in uris]
    return fs.cat_ranges(paths, [0] * len(paths), [n] * len(paths), on_error="return")


def put_file(local: str | os.PathLike, uri: str) -> None:
    """Upload a local file to the object ``uri`` (multipart for large files)."""
    fs, path = filesystem(uri)
    fs.put_file(str(local), path)


def open_output(uri: str, mode: str = "wb", **kwargs):
    """A writable file-like on the object ``uri``; the object appears whole when it is closed."""
    fs, path = filesystem(uri)
    return fs.open(path, mode, **kwargs)


def remove(location: str | os.PathLike) -> None:
    """Delete the file or object (gone already is fine)."""
    local = local_file(location)
    if local is not None:
        local.unlink(missing_ok=True)
        return
    fs, path = filesystem(str(location))
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def name_of(location: str | os.PathLike) -> str:
    """The last part of a path or URI (``bikes.mp4``)."""
    local = local_file(location)
    return local.name if local is not None else PurePosixPath(urlsplit(str(location)).path).name


# -- object names, checked (the search page and forget serve or delete only under their roots) --
BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,221}$")


def object_name(uri: str, root: bool = False) -> tuple[str, str, tuple[str, ...]] | None:
    """``(scheme, bucket, key segments)`` of an object URI; None unless it is a plain object name.

    Refused: anything but ``s3://`` / ``gs://`` (``gcs://`` is ``gs``), a bucket that is no bucket
    name, ``%`` (no second decoding), ``?`` / ``#`` (versions, fragments), backslashes, control
    characters, and empty, ``.`` or ``..`` segments. A ``root`` may be a bare bucket or end in ``/``.
    """
    if not isinstance(uri, str) or not is_remote(uri):
        return None
    if any(c in uri for c in "%?#\\") or any(ord(c) < 32 or ord(c) == 127 for c in uri):
        return None
    parts = urlsplit(uri)
    scheme = "gs" if parts.scheme.lower() == "gcs" else parts.scheme.lower()
    if not BUCKET_NAME.match(parts.netloc) or (parts.path and not parts.path.startswith("/")):
        return None
    segments = tuple(parts.path[1:].split("/")) if parts.path else ()
    if root:
        segments = tuple(s for s in segments if s)  # "s3://b", "s3://b/", "s3://b/videos/" are roots
    if (not segments and not root) or any(s in ("", ".", "..") for s in segments):
        return None
    return scheme, parts.netloc, segments


def object_under(name: tuple[str, str, tuple[str, ...]], roots: list[tuple[str, str, tuple[str, ...]]]) -> bool:
    scheme, bucket, key = name
    return any((scheme, bucket) == (s, b) and len(key) > len(k) and key[: len(k)] == k for s, b, k in roots)


def under_bucket_prefix(uri: str, prefixes: list[str]) -> bool:
    """Whether ``uri`` is a plain object name (``object_name``) under one of the bucket ``prefixes``."""
    name = object_name(uri)
    roots = [r for r in (object_name(p, root=True) for p in prefixes) if r is not None]
    return name is not None and object_under(name, roots)
