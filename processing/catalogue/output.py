"""Where an export is written: a local folder, or a bucket prefix (``s3://``, ``gs://``) through fsspec.

``Output(target)`` names files by their path relative to the target (``videos.jsonl``,
``clips/<id>-0000.mp4``). ``atomic(name)`` writes ``name.tmp`` and renames it when complete, so a
reader never sees half a file and a failed export leaves the earlier file in place: a rename on
disk, a server-side copy in a bucket (an object store has no rename). ``location(name)`` is what
reports print: the local path as before, or the object's URI. A bucket is checked when the export
starts (``prepare``): a missing package or a bucket that does not answer is a ``ValueError``
(``crawler.locations.StorageError``) before anything is written.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

from crawler import locations


class Output:
    """A folder or a bucket prefix that an export writes files into."""

    def __init__(self, target: str | os.PathLike):
        text = os.fspath(target)
        self.remote = locations.is_remote(text)
        if self.remote:
            self.uri = text.rstrip("/")
            self.fs, root = locations.filesystem(self.uri)  # StorageError: no package for it
            self.root = root.rstrip("/")
            self.dir = None
        else:
            self.dir = locations.local_file(text) or Path(text)

    def __str__(self) -> str:
        return self.uri if self.remote else str(self.dir)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def location(self, name: str) -> str:
        """The path or URI of ``name``, for reports and manifests."""
        return f"{self.uri}/{name}" if self.remote else str(self.dir / name)

    def prepare(self) -> None:
        """The folder made, or the bucket checked (``StorageError`` when it does not answer)."""
        if self.remote:
            locations.check(self.uri)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)

    # -- writing -----------------------------------------------------------------------------
    def create(self, name: str):
        """A binary file open for writing at ``name`` (complete once closed)."""
        if self.remote:
            return self.fs.open(self._path(name), "wb")
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb")  # noqa: SIM115 - the caller closes it

    def put(self, local: str | os.PathLike, name: str) -> None:
        """Copy a local file to ``name`` (moved, when the output is the same disk)."""
        if self.remote:
            self.fs.put_file(os.fspath(local), self._path(name))
        else:
            (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, self.dir / name)

    def rename(self, src: str, dst: str) -> None:
        if self.remote:  # a server-side copy, then the delete (what s3fs' mv does; no GCS "move" API needed)
            self.fs.copy(self._path(src), self._path(dst))
            self.fs.rm_file(self._path(src))
        else:
            os.replace(self.dir / src, self.dir / dst)

    @contextmanager
    def atomic(self, name: str, mode: str = "wb", encoding: str = "utf-8", newline: str | None = None):
        """A file to write ``name`` through: ``name.tmp`` until complete, then renamed; removed on error."""
        tmp = f"{name}.tmp"
        raw = self.create(tmp)
        f = raw if "b" in mode else io.TextIOWrapper(raw, encoding=encoding, newline=newline)
        try:
            yield f
            f.close()
        except BaseException:
            try:
                f.close()
            finally:
                self.remove(tmp)
            raise
        self.rename(tmp, name)

    # -- what is there -----------------------------------------------------------------------
    def names(self, folder: str = "") -> list[str]:
        """The file names directly in ``folder`` (relative), sorted; [] when it does not exist."""
        if self.remote:
            try:
                entries = self.fs.ls(self._path(folder).rstrip("/"), detail=True, refresh=True)
            except FileNotFoundError:
                return []
            return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file")
        path = self.dir / folder
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []

    def size(self, name: str) -> int:
        if self.remote:
            return int(self.fs.info(self._path(name), refresh=True)["size"])
        return (self.dir / name).stat().st_size

    def remove(self, name: str) -> None:
        if self.remote:
            try:
                self.fs.rm_file(self._path(name))
            except FileNotFoundError:
                pass
        else:
            (self.dir / name).unlink(missing_ok=True)
