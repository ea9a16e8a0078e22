"""LocalSpider: every file under a folder or a bucket prefix, videos recognised by their first bytes; files stay put."""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

import scrapy

from crawler import locations
from crawler.items import REJECTED, VideoItem
from crawler.media_types import SNIFF_BYTES, has_video_extension, sniff
from crawler.spiders.base import RedisBaseSpider


@dataclass(frozen=True)
class Found:
    """One file of the folder and the spider's verdict on it."""

    path: str
    kind: str | None = None  # the container its first bytes announce (videos)
    status: str | None = None  # None: a video candidate; else "rejected" / "failed"
    code: str | None = None
    message: str | None = None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _look(path: str) -> Found:
    """The verdict on one file (a symlink already allowed); never opens what is not a regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return Found(path, status="failed", code="missing_file", message="a symlink to nothing")
    except OSError as exc:
        return Found(path, status="failed", code="unreadable", message=exc.strerror)
    if not stat.S_ISREG(info.st_mode):  # FIFO, socket, device: opening one could block or harm
        return Found(path, status=REJECTED, code="not_a_file", message=stat.filemode(info.st_mode))
    if info.st_size == 0:
        return Found(path, status="failed", code="empty_file", message="0 bytes")
    try:
        with open(path, "rb") as f:
            kind = sniff(f.read(SNIFF_BYTES))
    except OSError as exc:
        return Found(path, status="failed", code="unreadable", message=exc.strerror)
    if kind or has_video_extension(path):
        return Found(path, kind)
    return Found(path, status=REJECTED, code="not_a_video", message="no video container or extension")


def _scan_dir(directory: str, root: str, follow_symlinks: bool = False) -> tuple[list[Found], list[str], dict[str, int]]:
    """One folder: (every file's verdict, subfolders, counts). Runs in a thread.

    Folder symlinks are not followed (no loops). A file symlink whose target lies outside
    ``root`` (a real path) is rejected ``outside_root`` unless ``follow_symlinks``.
    """
    found, subdirs, counts = [], [], {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found, subdirs, {"unreadable_dirs": 1}
    for entry in sorted(entries, key=lambda e: os.fsencode(e.name)):
        try:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
                continue
            if entry.is_symlink():
                if entry.is_dir(follow_symlinks=True):
                    counts["folder_symlinks"] = counts.get("folder_symlinks", 0) + 1
                    continue
                target = os.path.realpath(entry.path)
                if not follow_symlinks and not _inside(target, root):
                    found.append(Found(entry.path, status=REJECTED, code="outside_root",
                                       message="a symlink out of the crawled folder"))  # fmt: skip
                    continue
        except OSError as exc:
            found.append(Found(entry.path, status="failed", code="unreadable", message=exc.strerror))
            continue
        found.append(_look(entry.path))
    return found, subdirs, counts


HEADS_PER_CALL = 256  # objects whose first bytes are fetched in one concurrent batch


def _look_objects(objects: list[tuple[str, int]]) -> list[Found]:
    """The verdicts on a bucket folder's objects: their first bytes fetched concurrently (ranged GETs)."""
    found: list[Found] = []
    for start in range(0, len(objects), HEADS_PER_CALL):
        chunk = objects[start : start + HEADS_PER_CALL]
        sized = [uri for uri, size in chunk if size > 0]
        heads = dict(zip(sized, locations.heads(sized, SNIFF_BYTES)))
        for uri, size in chunk:
            head = heads.get(uri)
            if size == 0:
                found.append(Found(uri, status="failed", code="empty_file", message="0 bytes"))
            elif isinstance(head, BaseException):
                message = f"{type(head).__name__}: {head}"[:200]
                found.append(Found(uri, status="failed", code="unreadable", message=message))
            elif (kind := sniff(head or b"")) or has_video_extension(uri):
                found.append(Found(uri, kind))
            else:
                found.append(Found(uri, status=REJECTED, code="not_a_video",
                                   message="no video container or extension"))  # fmt: skip
    return found


def display_name(name: str) -> str:
    """A file name as text that encodes: bytes that are not UTF-8 as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


class LocalSpider(RedisBaseSpider):
    """Walks a folder tree (or a bucket prefix) in a thread and yields one item per file, videos in place.

    ``scrapy crawl local -a path=~/Videos``; Redis payloads carry a path or a ``file://`` URI
    as ``url``. ``-a path=s3://bucket/prefix/`` (or ``gs://``) lists the objects under the prefix
    (fsspec: s3fs / gcsfs, configured by the standard ``AWS_*`` / Google variables), sniffs each
    one's first bytes by a ranged read, and yields items whose ``path`` is the object's URI: the
    pipelines and the workers read it where it lies (``crawler.locations``). A bucket that cannot
    be listed, or a missing package, stops the crawl at start.

    Files are videos when their first bytes are a known container (MP4/MOV,
    Matroska/WebM, AVI, Ogg, FLV, ASF, MPEG-PS/TS) or, failing that, when their extension
    says so (the probe pipeline is the real check and records what is not a video). Every
    other file is recorded too, so nothing in the folder goes unaccounted: ``rejected`` with
    ``not_a_video`` (stage ``crawl``), ``not_a_file`` (FIFOs, sockets, devices: never
    opened) or ``outside_root``; ``failed`` with ``empty_file``, ``unreadable`` or
    ``missing_file`` (a dangling symlink). Folder symlinks are not followed (no loops); file
    symlinks only to files inside the folder, unless ``-a follow_symlinks=1``.

    Names are kept byte for byte: a name that is not UTF-8 stays in ``path`` with
    ``surrogateescape`` (``os.fsencode(path)`` is the name on disk) and its URL is the
    percent-encoded ``file://`` URI; ``title`` shows such bytes as ``\\xNN``.
    """

    name = "local"
    start_arg = "path"

    def __init__(self, *args, follow_symlinks=None, **kwargs):
        super().__init__(*args, **kwargs)
        value = str(follow_symlinks if follow_symlinks is not None else "0").strip().lower()
        if value not in ("0", "1", "true", "false", "yes", "no"):
            raise ValueError(f"follow_symlinks must be 1 or 0, got {follow_symlinks!r}")
        self.follow_symlinks = value in ("1", "true", "yes")

    def start_payload_url(self, value: str) -> str:
        value = value.strip()
        if locations.is_remote(value):
            locations.check(value)  # StorageError: the crawl stops here, with the reason
            return value
        return Path(value).expanduser().resolve().as_uri()

    def make_start_request(self, url: str, meta: dict):
        if locations.is_remote(url):
            path = url
        elif url.startswith("file:"):
            path = os.fsdecode(unquote_to_bytes(urlsplit(url).path))
        else:
            path = url
        root = path if locations.is_remote(path) else str(Path(path).expanduser())
        meta.update(scan_root=root, dont_obey_robotstxt=True)
        return scrapy.Request("data:,", callback=self.scan, meta=meta, dont_filter=True)

    async def scan(self, response):
        if locations.is_remote(response.meta["scan_root"]):
            async for item in self.scan_objects(response.meta["scan_root"]):
                yield item
            return
        root = Path(response.meta["scan_root"]).absolute()
        if root.is_file():  # one file named on purpose: read even if it is a symlink
            for found in [await asyncio.to_thread(_look, str(root))]:
                item = self._new(found)
                if item is not None:
                    yield item
            return
        if not root.is_dir():
            self.count("missing_roots")
            self.logger.error("no such folder: %s", display_name(str(root)))
            return
        pending, real_root = [str(root)], os.path.realpath(root)
        while pending:
            found, subdirs, counts = await asyncio.to_thread(_scan_dir, pending.pop(), real_root,
                                                             self.follow_symlinks)  # fmt: skip
            pending.extend(reversed(subdirs))
            for name, n in counts.items():
                self.count(f"skipped/{name}", n)
            for one in found:
                item = self._new(one)
                if item is not None:
                    yield item

    async def scan_objects(self, root: str):
        """The objects under a bucket prefix (or the one object it names), a listed folder at a time."""
        try:
            if await asyncio.to_thread(locations.is_file, root):
                batches = iter([[(root, await asyncio.to_thread(locations.size, root))]])
            else:
                batches = locations.walk(root)
        except Exception as exc:  # noqa: BLE001 - the bucket went away since the start check
            self.count("missing_roots")
            self.logger.error("cannot list %s: %s: %s", root, type(exc).__name__, exc)
            return
        listed = 0
        while True:
            try:
                batch = await asyncio.to_thread(next, batches, None)
            except Exception as exc:  # noqa: BLE001
                self.count("skipped/unreadable_dirs")
                self.logger.error("listing %s stopped: %s: %s", root, type(exc).__name__, exc)
                break
            if batch is None:
                break
            listed += len(batch)
            for one in await asyncio.to_thread(_look_objects, batch):
                item = self._new(one)
                if item is not None:
                    yield item
        if not listed:
            self.count("missing_roots")
            self.logger.error("no objects under %s", root)

    def _new(self, found: Found) -> VideoItem | None:
        """The item for a file not seen before by any process on this Redis, counted."""
        if found.status is None:
            self.count(f"sniffed/{found.kind or 'by_extension'}")
        else:
            self.count(f"skipped/{found.code}")
        item = self.to_item(found.path)
        if not self.first_sighting(item.url):
            self.count("videos_seen_before")
            return None
        if found.status == REJECTED:
            item.reject("crawl", found.code, found.message)
        elif found.status is not None:
            item.fail("crawl", found.code, found.message)
        return self.emit(item)

    @staticmethod
    def to_item(path: str) -> VideoItem:
        if locations.is_remote(path):  # an object: its URI is its URL and its path
            return VideoItem(url=path, source="local", path=path, download_via="local",
                             title=display_name(Path(locations.name_of(path)).stem))  # fmt: skip
        p = Path(path).absolute()
        return VideoItem(url=p.as_uri(), source="local", path=str(p), download_via="local",
                         title=display_name(p.stem))  # fmt: skip

