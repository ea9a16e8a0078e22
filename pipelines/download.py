"""Download stage: direct files through Scrapy's FilesPipeline, platform pages through yt-dlp.

``download_via``:

- ``"files"`` (or unset): a subclass of Scrapy's ``FilesPipeline``, so ``FILES_STORE`` may be a
  path, ``s3://`` or ``gs://`` (later stages read local paths only). Stored under
  ``full/<sha1 of the URL><known video extension or .bin>``: names from the web never become
  paths. ``download_maxsize = MEDIA_MAX_BYTES`` aborts mid-transfer and refuses a larger
  declared ``Content-Length`` at once. Only http(s).
- ``"ytdlp"``: ``python -m yt_dlp`` as an asyncio subprocess, killed after ``YTDLP_TIMEOUT``,
  with ``YTDLP_FORMAT``, size and duration caps, into a temp dir inside the store with a fixed
  output name; the file is then moved to ``full/<sha256>.<ext>``. URLs refused by
  ``crawler.netguard.refusal`` end with its reason code (``private_address``...).
- ``"local"``: the file is already at ``item.path``.

Before any download, the URL and the platform id are claimed in Redis (``<prefix>:seen``,
``pipelines.claims.SeenIndex``, shared by every spider process); one claimed before is a
``duplicate`` (``duplicate_of`` = its video id once known). A failed download releases its
claim so that a retry may try again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from scrapy import Request
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.pipelines.files import FilesPipeline, FSFilesStore

try:  # quiet base: Scrapy logs a traceback for every other media failure; ours are counted
    from scrapy.pipelines.media import _MediaRequestFiltered as _QuietFileException
except ImportError:  # pragma: no cover - a Scrapy without the private class
    from scrapy.pipelines.media import FileException as _QuietFileException
from twisted.internet.defer import CancelledError
from twisted.internet.error import TimeoutError as TxTimeoutError

from crawler.connection import get_redis
from crawler.errors import MediaError
from crawler.items import DUPLICATE, VideoItem, utcnow
from crawler.keys import RedisKeys
from crawler.media_types import VIDEO_EXTENSIONS
from crawler.netguard import NetPolicy, refusal
from pipelines.base import ItemPipeline
from pipelines.claims import SeenIndex
from pipelines.media import sha256_file

logger = logging.getLogger(__name__)


class DownloadError(MediaError, _QuietFileException):
    """A :class:`~crawler.errors.MediaError` raised inside the FilesPipeline machinery.

    It also derives from Scrapy's (private) filtered-request exception only so that Scrapy does
    not log a traceback per failed download; the pipeline records and counts every one instead.
    """


def safe_extension(name: str) -> str:
    """The file's extension when it is a known video extension, else ``.bin``."""
    ext = Path(name).suffix.lower()
    return ext if ext in VIDEO_EXTENSIONS else ".bin"


class DownloadPipeline(FilesPipeline, ItemPipeline):
    """Fetches each item's bytes into ``FILES_STORE`` and sets path, size_bytes, fetched_at."""

    stage = "download"
    LOG_FAILED_RESULTS = False

    def __init__(self, store_uri, *, crawler, redis_client=None):
        FilesPipeline.__init__(self, store_uri, crawler=crawler)
        ItemPipeline.__init__(self, crawler)
        s = crawler.settings
        self.max_bytes = s.getint("MEDIA_MAX_BYTES")
        self.max_duration = s.getfloat("MEDIA_MAX_DURATION")
        self.ytdlp_timeout = s.getfloat("YTDLP_TIMEOUT", 600.0)
        self.ytdlp_format = s.get("YTDLP_FORMAT")
        self.allow_private = NetPolicy.from_settings(s)
        self.schemes = set(s.getlist("CRAWL_ALLOWED_SCHEMES") or ["http", "https"])
        if self.max_bytes <= 0:
            raise ValueError(f"MEDIA_MAX_BYTES must be a positive integer, got {self.max_bytes}")
        self._results: dict[int, list] = {}
        self.seen = SeenIndex(redis_client or get_redis(), RedisKeys.from_settings(s))

    @classmethod
    def from_crawler(cls, crawler):
        cls._update_stores(crawler.settings)
        return cls(crawler.settings["FILES_STORE"], crawler=crawler)

    # -- the item entry point -----------------------------------------------------------
    async def process_item(self, item):
        return await ItemPipeline.process_item(self, item)

    async def process(self, item: VideoItem) -> str:
        via = item.download_via or "files"
        if via == "local":
            return self._local(item)
        fresh, video_id = self.seen.claim(item)
        if not fresh:
            item.status = DUPLICATE
            item.duplicate_of = video_id
            item.errors.pop(self.stage, None)
            return "duplicate"
        try:
            if via == "ytdlp":
                await self._ytdlp(item)
            elif via == "files":
                await self._files(item)
            else:
                raise MediaError("bad_download_via", repr(via))
        except BaseException:
            self.seen.release(item)
            raise
        item.fetched_at = utcnow()
        return "ok"

    def _local(self, item: VideoItem) -> str:
        path = Path(item.path or "")
        if not item.path or not path.is_file():
            raise MediaError("missing_file", str(item.path))
        item.size_bytes = path.stat().st_size
        item.fetched_at = item.fetched_at or utcnow()
        return "local"

    # -- direct files through FilesPipeline ---------------------------------------------
    async def _files(self, item: VideoItem) -> None:
        scheme = urlparse(item.url).scheme.lower()
        if scheme not in self.schemes:
            raise MediaError("bad_scheme", f"{scheme or 'no'} scheme")
        results = await self._download_files(item)
        ok, value = results[0] if results else (False, None)
        if not ok:
            exc = getattr(value, "value", value)
            if isinstance(exc, MediaError):
                raise exc
            raise MediaError("download_error", str(exc))
        item.path = self._local_path(value["path"])
        if item.path and os.path.exists(item.path):
            item.size_bytes = os.path.getsize(item.path)

    async def _download_files(self, item: VideoItem):
        """FilesPipeline's own request path, returning its ``[(ok, FileInfo | Failure)]``."""
        await FilesPipeline.process_item(self, item)
        return self._results.pop(id(item), [])

    def item_completed(self, results, item, info):
        self._results[id(item)] = results  # picked up by _download_files, same event loop turn
        return item

    def _local_path(self, store_path: str) -> str:
        if isinstance(self.store, FSFilesStore):
            return str(Path(self.store.basedir) / store_path)
        return f"{self.settings['FILES_STORE'].rstrip('/')}/{store_path}"

    def get_media_requests(self, item, info):
        meta = {"download_maxsize": self.max_bytes, "download_warnsize": 0}
        return [Request(item.url, meta=meta, dont_filter=True)]

    def file_path(self, request, response=None, info=None, *, item=None):
        digest = hashlib.sha1(request.url.encode()).hexdigest()  # noqa: S324  (a name, not security)
        return f"full/{digest}{safe_extension(urlparse(request.url).path)}"

    async def media_downloaded(self, response, request, info, *, item=None):
        if response.status != 200:
            raise DownloadError(f"http_{response.status}", f"HTTP {response.status}")
        if "dataloss" in response.flags or "partial" in response.flags:
            raise DownloadError("truncated", f"response flags {response.flags}")
        if not response.body:
            raise DownloadError("empty_file", "0 bytes")
        return await super().media_downloaded(response, request, info, item=item)

    def media_failed(self, failure, request, info):
        exc = failure.value
        if isinstance(exc, DownloadError):
            raise exc
        if isinstance(exc, (DownloadTimeoutError, TxTimeoutError)):
            raise DownloadError("timeout", str(exc))
        if isinstance(exc, (DownloadCancelledError, CancelledError)):
            raise DownloadError("too_large", f"over MEDIA_MAX_BYTES={self.max_bytes}: {exc}")
        if isinstance(exc, DownloadConnectionRefusedError):
            raise DownloadError("connection_refused", str(exc))
        if isinstance(exc, CannotResolveHostError):
            raise DownloadError("unresolvable", str(exc))
        if isinstance(exc, ResponseDataLossError):
            raise DownloadError("truncated", str(exc) or "connection closed before the end")
        if isinstance(exc, IgnoreRequest):  # a downloader middleware refused it
            text = str(exc)
            if text.startswith("netguard:") and text.split(":", 1)[1].strip():
                raise DownloadError(text.split(":", 1)[1].strip().split()[0], text)
            raise DownloadError("filtered", text)
        raise DownloadError("download_error", f"{type(exc).__name__}: {exc}")

    # -- yt-dlp ---------------------------------------------------------------------------
    async def _ytdlp(self, item: VideoItem) -> None:
        reason = await self.in_thread(refusal, item.url, self.allow_private, timeout=30)
        if reason:
            raise MediaError(reason, "refused by crawler.netguard")
        if not isinstance(self.store, FSFilesStore):
            raise MediaError("unsupported_store", "yt-dlp downloads need a local FILES_STORE")
        root = Path(self.store.basedir)
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="ytdlp-", dir=root / "tmp"))
        try:
            info = await self._run_ytdlp(item.url, tmp)
            files = [p for p in tmp.iterdir() if p.is_file() and p.name.startswith("video.")
                     and not p.name.endswith((".part", ".ytdl", ".json"))]  # fmt: skip
            if not files:
                raise MediaError("ytdlp_error", "yt-dlp wrote no file (filtered by size/duration?)")
            src = max(files, key=lambda p: p.stat().st_size)
            digest = await self.in_thread(sha256_file, src, timeout=self.media_timeout)
            dest = root / "full" / f"{digest}{safe_extension(src.name)}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        item.path = str(dest)
        item.size_bytes = dest.stat().st_size
        self._apply_info(item, info)

    async def _run_ytdlp(self, url: str, tmp: Path) -> dict:
        cmd = [sys.executable, "-m", "yt_dlp", "--ignore-config", "--no-playlist",
               "--no-progress", "--quiet", "--no-warnings", "--no-simulate", "--dump-json",
               "--restrict-filenames", "--no-cache-dir", "--no-mtime",
               "-f", self.ytdlp_format, "--max-filesize", str(self.max_bytes),
               "--match-filters", f"!is_live & duration <=? {self.max_duration:g}",
               "--socket-timeout", "30", "-P", str(tmp), "-o", "video.%(ext)s", "--", url]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.ytdlp_timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise MediaError("timeout", f"yt-dlp ran over {self.ytdlp_timeout:g}s") from None
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise MediaError("ytdlp_error", (message[-1] if message else f"exit {proc.returncode}")[:300])
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}

    @staticmethod
    def _apply_info(item: VideoItem, info: dict) -> None:
        item.extractor = item.extractor or info.get("extractor_key")
        if not item.platform_id and info.get("id") and info.get("extractor_key"):
            item.platform_id = f"{info['extractor_key']}:{info['id']}"
        item.title = item.title or info.get("title")
        item.description = item.description or info.get("description")
        item.uploader = item.uploader or info.get("uploader")
        item.license = item.license or info.get("license")
        item.duration_hint = item.duration_hint or info.get("duration")

