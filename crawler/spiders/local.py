"""LocalSpider: every video under a folder (recursive), recognised by its first bytes; files stay put."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import scrapy

from crawler.items import VideoItem
from crawler.spiders.base import RedisBaseSpider

# Extensions that say "video" even when the bytes do not (the probe pipeline then records why).
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .webm .mkv .avi .ogv .flv .wmv .mpg .mpeg .3gp .3g2 .mts .m2ts .ts .vob .asf".split()
)
# ISO-BMFF brands of still images and audio-only files (HEIC, AVIF, M4A...): not videos.
NON_VIDEO_BRANDS = frozenset({b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis", b"M4A ", b"M4B ", b"M4P "})
SNIFF_BYTES = 400


def sniff(head: bytes) -> str | None:
    """The container family the first bytes of a file announce, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return None if head[8:12] in NON_VIDEO_BRANDS else "isobmff"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg-ps"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpeg-ts"
    if len(head) >= 197 and head[4] == 0x47 and head[196] == 0x47:
        return "m2ts"
    return None


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
            with open(entry.path, "rb") as f:
                kind = sniff(f.read(SNIFF_BYTES))
        except OSError:
            skipped["unreadable_files"] = skipped.get("unreadable_files", 0) + 1
            continue
        if kind or Path(entry.name).suffix.lower() in VIDEO_EXTENSIONS:
            videos.append((entry.path, kind))
        else:
            skipped["not_video"] = skipped.get("not_video", 0) + 1
    return videos, subdirs, skipped


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


def _scan_single(path: str):
    """A start path that is one file: the same verdict as inside a folder."""
    try:
        with open(path, "rb") as f:
            kind = sniff(f.read(SNIFF_BYTES))
    except OSError:
        return [], [], {"unreadable_files": 1}
    if kind or Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        return [(path, kind)], [], {}
    return [], [], {"not_video": 1}
