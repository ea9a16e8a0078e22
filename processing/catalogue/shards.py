"""WebDataset shards of the kept videos: ``videos-000000.tar``... with each video's file, document,
thumbnail and embedding.

One sample per video, keyed by its ``video_id`` (64 hex characters, no dot, as WebDataset
keys must be): ``<key>.mp4`` (the video file as stored; ``.webm``/``.mkv``... when it is one),
``<key>.json`` (its catalogue document without vectors), ``<key>.jpg`` (the thumbnail, when the
frames stage made one) and ``<key>.npy`` (its video descriptor: float32, shape (D,), the
L2-normalised mean of the frame embeddings of ``embedding_model``; the catalogue keeps no
per-frame vectors). Files are streamed into the tar from where the documents say they are (a
path, or an object URI read in ranged blocks: ``crawler.locations``), and the tar is streamed to
the output (a folder, or a bucket prefix: processing/catalogue/output.py): one video at a time is
open, none is read into memory. A new shard starts before a sample would take the current one past
``shard_size`` bytes, or after ``ceil(total / shard_count)`` samples. Shards are written as
``.tmp`` files and renamed when all are complete; shards of an earlier export in the folder
that this one did not write again are deleted, so a glob never mixes two exports.
``shards.json`` lists the shards, their sample counts and sizes, and the brace pattern to
give ``webdataset.WebDataset``.
"""

from __future__ import annotations

import io
import json
import math
import re
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from crawler import locations
from crawler.errors import MediaError
from processing.catalogue.documents import public_doc
from processing.catalogue.output import Output

PREFIX = "videos"
SHARD_NAME = re.compile(rf"^{PREFIX}-(\d{{6}})\.tar(\.tmp)?$")
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "mov", "avi", "m4v", "mpg", "mpeg", "ts", "flv", "ogv", "3gp")
DEFAULT_SHARD_SIZE = 1_000_000_000
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_size(text: str | int) -> int:
    """``"1GB"`` -> 10**9, ``"500MiB"`` -> 500 * 2**20, ``"1.5g"``, ``"123"`` (bytes); ValueError else."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"shard size must be bytes with an optional unit (500MB, 1GB, 2GiB), got {text!r}")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise ValueError(f"shard size must be positive, got {text!r}")
    return value


def human(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def readable_size(location: str | None) -> int | None:
    """Bytes of the file or object a document names (a path, ``file://`` or object URI) when it
    can be read, else None."""
    if not isinstance(location, str) or not location:
        return None
    local = locations.local_file(location)
    if local is not None:
        return local.stat().st_size if local.is_file() else None
    try:
        return locations.size(location)
    except MediaError:
        return None


def video_extension(doc: dict[str, Any], location: str) -> str:
    """The file's own extension when it is a video one, else guessed from the probed container."""
    ext = PurePosixPath(locations.name_of(location)).suffix.lower().lstrip(".")
    if ext in VIDEO_EXTENSIONS:
        return ext
    container = (doc.get("container") or "").lower()
    if "webm" in container and (doc.get("video_codec") or "").lower() in ("vp8", "vp9", "av1"):
        return "webm"
    if "matroska" in container:
        return "mkv"
    return "mp4"


def _member_bytes(size: int) -> int:
    return tarfile.BLOCKSIZE + math.ceil(size / tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


class ShardWriter:
    """Writes samples into numbered tar shards in ``out_dir`` (a folder or a bucket prefix); ``write(docs)``
    reports them."""

    def __init__(self, out_dir: Output | str | Path, shard_size: str | int | None = None,
                 shard_count: int | None = None):  # fmt: skip
        if shard_size is not None and shard_count is not None:
            raise ValueError("give a shard size or a shard count, not both")
        if shard_count is not None and (not isinstance(shard_count, int) or shard_count < 1):
            raise ValueError(f"shard count must be a positive integer, got {shard_count!r}")
        self.output = out_dir if isinstance(out_dir, Output) else Output(out_dir)
        self.max_bytes = parse_size(shard_size) if shard_size is not None else None
        if shard_count is None and self.max_bytes is None:
            self.max_bytes = DEFAULT_SHARD_SIZE
        self.shard_count = shard_count
        self.needs_total = shard_count is not None  # the Exporter counts the samples first
        self.total = 0
        self.shards: list[dict[str, Any]] = []
        self.tar: tarfile.TarFile | None = None
        self.sink = None  # the file the current shard's tar is streamed into
        self.mtime = int(time.time())

    # -- shards -----------------------------------------------------------------------------
    @staticmethod
    def _name(index: int, tmp: bool = True) -> str:
        return f"{PREFIX}-{index:06d}.tar{'.tmp' if tmp else ''}"

    def _open(self) -> None:
        index = len(self.shards)
        self.sink = self.output.create(self._name(index))
        self.tar = tarfile.open(fileobj=self.sink, mode="w")  # uncompressed, as WebDataset reads fastest
        self.shards.append({"file": self._name(index, tmp=False), "samples": 0, "bytes": 0})

    def _close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.sink.close()
            self.shards[-1]["bytes"] = self.output.size(self._name(len(self.shards) - 1))
            self.tar = self.sink = None

    def _room(self, sample_bytes: int) -> bool:
        """Whether the current shard takes one more sample of ``sample_bytes``."""
        shard = self.shards[-1]
        if not shard["samples"]:
            return True
        if self.shard_count is not None:
            return shard["samples"] < math.ceil(self.total / self.shard_count)
        return shard["bytes"] + sample_bytes <= self.max_bytes

    def _add(self, name: str, data: bytes | None = None, location: str | None = None, size: int = 0) -> None:
        info = tarfile.TarInfo(name)
        info.mtime, info.mode = self.mtime, 0o444
        if location is not None:
            with locations.open_input(location) as f:  # streamed into the tar in blocks
                info.size = size
                self.tar.addfile(info, f)
        else:
            info.size = len(data)
            self.tar.addfile(info, io.BytesIO(data))
        self.shards[-1]["bytes"] += _member_bytes(info.size)

    # -- samples ----------------------------------------------------------------------------
    def write(self, docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        import numpy as np

        skipped: dict[str, int] = {}
        missing: dict[str, int] = {}
        for stale in self.output.names():
            if SHARD_NAME.match(stale) and stale.endswith(".tmp"):
                self.output.remove(stale)
        try:
            for doc in docs:
                video_size = readable_size(doc.get("path"))
                if video_size is None:
                    skipped["no_video_file"] = skipped.get("no_video_file", 0) + 1
                    continue
                key = doc["video_id"]
                # (member name, bytes, or the location of a file and its size)
                members: list[tuple[str, bytes | None, str | None, int]] = [
                    (f"{key}.{video_extension(doc, doc['path'])}", None, doc["path"], video_size),
                    (f"{key}.json", json.dumps(public_doc(doc), ensure_ascii=False, sort_keys=True).encode(), None, 0),
                ]
                thumb_size = readable_size(doc.get("thumbnail_path"))
                if thumb_size is not None:
                    members.append((f"{key}.jpg", None, doc["thumbnail_path"], thumb_size))
                else:
                    missing["thumbnail"] = missing.get("thumbnail", 0) + 1
                vec = doc.get("vector")
                if isinstance(vec, (list, tuple)) and vec:
                    buf = io.BytesIO()
                    np.save(buf, np.asarray(vec, dtype=np.float32).reshape(-1), allow_pickle=False)
                    members.append((f"{key}.npy", buf.getvalue(), None, 0))
                else:
                    missing["embedding"] = missing.get("embedding", 0) + 1
                size = sum(_member_bytes(n if loc else len(d)) for _, d, loc, n in members)
                if self.tar is None or not self._room(size):
                    self._close()
                    self._open()
                for name, data, location, n in members:
                    self._add(name, data, location, n)
                self.shards[-1]["samples"] += 1
            self._close()
        except BaseException:
            if self.tar is not None:
                self.tar.close()
                self.sink.close()
            for i in range(len(self.shards)):
                self.output.remove(self._name(i))
            raise
        return self._finish(skipped, missing)

    def _finish(self, skipped: dict[str, int], missing: dict[str, int]) -> dict[str, Any]:
        for i in range(len(self.shards)):
            self.output.rename(self._name(i), self._name(i, tmp=False))
        for old in self.output.names():
            m = SHARD_NAME.match(old)
            if m and not m.group(2) and int(m.group(1)) >= len(self.shards):
                self.output.remove(old)  # from an earlier, larger export
        n = len(self.shards)
        pattern = f"{PREFIX}-{{000000..{n - 1:06d}}}.tar" if n > 1 else (f"{PREFIX}-000000.tar" if n else "")
        summary = {
            "pattern": pattern, "shards": self.shards, "samples": sum(s["samples"] for s in self.shards),
            "bytes": sum(s["bytes"] for s in self.shards), "skipped": dict(sorted(skipped.items())),
            "missing": dict(sorted(missing.items())),
            "members": {"mp4": "the video file", "json": "its catalogue document", "jpg": "thumbnail",
                        "npy": "float32 (D,) video descriptor of the document's embedding_model"},
        }  # fmt: skip
        with self.output.atomic("shards.json", "w") as f:
            f.write(json.dumps(summary, indent=2) + "\n")
        return {"file": self.output.location(pattern) if pattern else None, "rows": summary["samples"],
                "shards": n, "bytes": summary["bytes"], "skipped": summary["skipped"],
                "missing": summary["missing"], "index_file": self.output.location("shards.json")}  # fmt: skip
