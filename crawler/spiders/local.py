"""LocalSpider: every video under a folder (recursive), recognised by its first bytes; files stay put."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import scrapy

from crawler.items import VideoItem
from crawler.media_types import SNIFF_BYTES, has_video_extension, sniff
from crawler.spiders.base import RedisBaseSpider


def _look(path: str) -> tuple[bool, str | None]:
    """(is it a video, the container its first bytes announce); raises OSError."""
    with open(path, "rb") as f:
        kind = sniff(f.read(SNIFF_BYTES))
    return bool(kind) or has_video_extension(path), kind


def _scan_dir(directory: str) -> tuple[list[tuple[str, str | None]], list[str], dict[str, int]]:
    """One folder: (videos as (path, container)), subfolders, skip counts). Runs in a thread."""
    videos, subdirs, skipped = [], [], {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return videos, subdirs, {"unreadable_dirs": 1}
    for entry in sorted(entries, key=lambda e: e.name):
        try:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
                continue
            if not entry.is_file(follow_symlinks=True):
                skipped["not_regular"] = skipped.get("not_regular", 0) + 1
                continue
            is_video, kind = _look(entry.path)
        except OSError:
            skipped["unreadable_files"] = skipped.get("unreadable_files", 0) + 1
            continue
        if is_video:
            videos.append((entry.path, kind))
        else:
            skipped["not_video"] = skipped.get("not_video", 0) + 1
    return videos, subdirs, skipped


def _scan_single(path: str):
    """A start path that is one file: the same verdict as inside a folder."""
    try:
        is_video, kind = _look(path)
    except OSError:
        return [], [], {"unreadable_files": 1}
    if is_video:
        return [(path, kind)], [], {}
    return [], [], {"not_video": 1}


class LocalSpider(RedisBaseSpider):
    """Walks a folder tree in a thread and yields one item per video file, in place.

    ``scrapy crawl local -a path=~/Videos``; Redis payloads carry a path or a ``file://`` URI
    as ``url``. Files are videos when their first bytes are a known container (MP4/MOV,
    Matroska/WebM, AVI, Ogg, FLV, ASF, MPEG-PS/TS) or, failing that, when their extension
    says so (the probe pipeline is the real check and records what is not a video). Folder
    symlinks are not followed (no loops).
    """

    name = "local"
    start_arg = "path"

    def start_payload_url(self, value: str) -> str:
        return Path(value).expanduser().resolve().as_uri()

    def make_start_request(self, url: str, meta: dict):
        if url.startswith("file:"):
            path = unquote(urlsplit(url).path)
        else:
            path = url
        meta.update(scan_root=str(Path(path).expanduser()), dont_obey_robotstxt=True)
        return scrapy.Request("data:,", callback=self.scan, meta=meta, dont_filter=True)

    async def scan(self, response):
        root = Path(response.meta["scan_root"]).absolute()
        if root.is_file():
            videos, _, skipped = await asyncio.to_thread(_scan_single, str(root))
            for name, n in skipped.items():
                self.count(f"skipped/{name}", n)
            for path, kind in videos:
                if self.first_sighting(Path(path).as_uri()):
                    yield self.emit(self.to_item(path))
            return
        if not root.is_dir():
            self.count("missing_roots")
            self.logger.error("no such folder: %s", root)
            return
        pending = [str(root)]
        while pending:
            videos, subdirs, skipped = await asyncio.to_thread(_scan_dir, pending.pop())
            pending.extend(reversed(subdirs))
            for name, n in skipped.items():
                self.count(f"skipped/{name}", n)
            for path, kind in videos:
                self.count(f"sniffed/{kind or 'by_extension'}")
                if not self.first_sighting(Path(path).as_uri()):
                    self.count("videos_seen_before")
                    continue
                yield self.emit(self.to_item(path))

    @staticmethod
    def to_item(path: str) -> VideoItem:
        p = Path(path).absolute()
        return VideoItem(url=p.as_uri(), source="local", path=str(p), download_via="local",
                         title=p.stem)  # fmt: skip

