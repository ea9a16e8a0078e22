"""Where downloaded videos are kept (``FILES_STORE``): one small protocol, stores chosen by URI scheme.

Downloads stream into a staging file on local disk (``store.staging_dir()``), hashing as they
go; a finished file is handed to ``store.persist(staged, path)``, which moves it under its
final relative ``path`` (``full/<sha256><ext>``) and returns its location (a local path, or
a URI for a remote store). Like Scrapy's ``FILES_STORE`` table (``FSFilesStore``,
``S3FilesStore``...), a store is picked by the scheme of ``FILES_STORE``: add a class to
``STORES`` for ``s3://`` or ``gs://``. Later stages read local paths: a remote store must
keep (or fetch back) a local copy for them.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit


class FilesStore(Protocol):
    """What the download pipeline needs of a store."""

    def staging_dir(self) -> Path:
        """A local folder (created) where downloads are written before they are complete."""

    def persist(self, staged: Path, path: str) -> str:
        """Move the complete file ``staged`` to ``path`` (relative); return its location."""

    def local_path(self, location: str) -> Path | None:
        """The local file of a location this store returned, or None if it has none."""


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


# scheme -> "module:Class"; "" is a plain path
STORES = {"": "pipelines.stores:FSFilesStore", "file": "pipelines.stores:FSFilesStore"}


def open_store(uri: str) -> FilesStore:
    """The store for ``FILES_STORE``; ``ValueError`` for a scheme no store serves."""
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
