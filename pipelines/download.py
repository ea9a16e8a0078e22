"""Download stage: direct files streamed to disk (``pipelines.fetch``), platform pages through guarded yt-dlp.

``download_via``:

- ``"files"`` (or unset): ``pipelines.fetch.fetch`` in a bounded thread pool streams the body
  into a staging file of the store (``pipelines.stores``, chosen by ``FILES_STORE``'s scheme),
  hashing as it goes; the file is then stored as ``full/<sha256><known video extension or
  .bin>`` (names from the web never become paths) and ``item.sha256`` is set (the dedup stage
  does not read the file again). Memory: at most ``MEDIA_CONCURRENT_DOWNLOADS`` downloads run
  at once (``CONCURRENT_REQUESTS_PER_DOMAIN`` per host), each holding one 64 KiB read: bytes
  in flight stay under ~1 MiB per download whatever the file size. ``MEDIA_MAX_BYTES`` is
  checked against the declared length, the bytes received and the bytes after gzip
  decoding (``too_large``); ``DOWNLOAD_TIMEOUT`` bounds the whole download. Redirects are
  followed (``MEDIA_ALLOW_REDIRECTS``, at most ``MEDIA_MAX_REDIRECTS`` hops), each hop through
  crawler.netguard (pinned to the checked address), the opt-out list (``OPTOUT_PATH``) and
  robots.txt (``ROBOTSTXT_OBEY``, through Scrapy's own middleware), like any Scrapy request.
  Transient failures (connection errors, ``RETRY_HTTP_CODES``) are retried ``RETRY_TIMES``.
  Only http(s); Scrapy's downloader (its proxies, cookies, HTTP/2) is not used for these.
- ``"ytdlp"``: ``python -m crawler.ytdlp_guard`` (yt-dlp's Python API with every connection it
  opens checked by the guard: manifests, segments, redirects, extractor calls) as an asyncio
  subprocess in its own process group, killed after ``YTDLP_TIMEOUT`` or once its folder
  passes ``MEDIA_MAX_BYTES``; a refused request ends the item with the guard's code and
  nothing is kept. The file is moved to ``full/<sha256>.<ext>``.
- ``"local"``: the file is already at ``item.path`` (a path, or an object URI the local spider
  listed in a bucket: read where it lies).

With a bucket store (``FILES_STORE=s3://...`` or ``gs://...``) the file is uploaded once complete
and ``item.path`` is the object's URI; its staged file stays on local disk, as the object's local
copy for the probe and phash stages, until the item is through the pipelines
(``crawler.locations.hold`` / ``release``).

Before any download, the URL and the platform id are claimed in Redis (``<prefix>:seen``,
``pipelines.claims.SeenIndex``, shared by every spider process); one claimed before is a
``duplicate`` (``duplicate_of`` = its video id once known). A failed download releases its
claim so that a retry may try again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from scrapy import Request, signals
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest

from crawler import locations
from crawler.connection import get_redis
from crawler.errors import MediaError
from crawler.items import DUPLICATE, VideoItem, utcnow
from crawler.keys import RedisKeys
from crawler.media_types import VIDEO_EXTENSIONS
from crawler.netguard import Guard, NetPolicy, refusal
from crawler.optout import OPTED_OUT, LISTED, OptOutList
from crawler.ytdlp_guard import policy_text
from pipelines.base import ItemPipeline
from pipelines.claims import SeenIndex
from pipelines.fetch import Fetched, Limits, fetch
from pipelines.media import sha256_file
from pipelines.stores import open_store

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent  # the project, for the yt-dlp child's imports


def safe_extension(name: str) -> str:
    """The file's extension when it is a known video extension, else ``.bin``."""
    ext = Path(name).suffix.lower()
    return ext if ext in VIDEO_EXTENSIONS else ".bin"


def _extension(*urls: str) -> str:
    for url in urls:
        ext = safe_extension(urlsplit(url).path)
        if ext != ".bin":
            return ext
    return ".bin"


def _folder_bytes(folder: Path) -> int:
    """Bytes in the files of ``folder`` now (files may come and go meanwhile)."""
    total = 0
    for entry in os.scandir(folder):
        try:
            total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


class DownloadPipeline(ItemPipeline):
    """Fetches each item's bytes into ``FILES_STORE`` and sets path, size_bytes, sha256, fetched_at."""

    stage = "download"

    def __init__(self, crawler, redis_client=None):
        super().__init__(crawler)
        s = crawler.settings
        self.max_bytes = s.getint("MEDIA_MAX_BYTES")
        self.max_duration = s.getfloat("MEDIA_MAX_DURATION")
        self.ytdlp_timeout = s.getfloat("YTDLP_TIMEOUT", 600.0)
        self.ytdlp_format = s.get("YTDLP_FORMAT")
        self.policy = NetPolicy.from_settings(s)
        self.guard = Guard(self.policy)
        self.schemes = {x.lower() for x in s.getlist("CRAWL_ALLOWED_SCHEMES") or ["http", "https"]}
        if self.max_bytes <= 0:
            raise ValueError(f"MEDIA_MAX_BYTES must be a positive integer, got {self.max_bytes}")
        redirects = s.getint("MEDIA_MAX_REDIRECTS", 10) if s.getbool("MEDIA_ALLOW_REDIRECTS", True) else 0
        if redirects < 0:
            raise ValueError(f"MEDIA_MAX_REDIRECTS must be >= 0, got {redirects}")
        timeout = s.getfloat("DOWNLOAD_TIMEOUT", 180.0)
        if timeout <= 0:
            raise ValueError(f"DOWNLOAD_TIMEOUT must be a positive number of seconds, got {timeout}")
        self.limits = Limits(max_bytes=self.max_bytes, timeout=timeout, max_redirects=redirects)
        workers = s.getint("MEDIA_CONCURRENT_DOWNLOADS", 16)
        self.per_host = s.getint("CONCURRENT_REQUESTS_PER_DOMAIN", 8)
        if workers <= 0 or self.per_host <= 0:
            raise ValueError(f"MEDIA_CONCURRENT_DOWNLOADS ({workers}) and CONCURRENT_REQUESTS_PER_DOMAIN "
                             f"({self.per_host}) must be positive")  # fmt: skip
        self.retries = s.getint("RETRY_TIMES", 2) if s.getbool("RETRY_ENABLED", True) else 0
        self.retry_codes = {"connection_refused", "connection_error", "truncated", "timeout"} | {
            f"http_{int(c)}" for c in s.getlist("RETRY_HTTP_CODES", [500, 502, 503, 504, 522, 524, 408, 429])
        }
        self.headers = {"User-Agent": s.get("USER_AGENT") or "videopipe"}
        self.store = open_store(s.get("FILES_STORE"))  # a store that cannot serve stops the crawl here
        self._held: dict[int, str] = {}  # id(item) -> the object whose local copy it holds
        self.optout = OptOutList.from_settings(s)
        self.obey_robots = s.getbool("ROBOTSTXT_OBEY")
        self._robots: RobotsTxtMiddleware | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
        self._slots = asyncio.Semaphore(workers)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._closing = threading.Event()
        self.seen = SeenIndex(redis_client or get_redis(), RedisKeys.from_settings(s),
                              ttl=s.getfloat("CRAWL_CLAIM_SECONDS", 3600.0))  # fmt: skip

    @classmethod
    def from_crawler(cls, crawler):
        pipeline = cls(crawler)
        for event in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(pipeline._item_through, signal=event)
        return pipeline

    def close_spider(self, spider=None):
        self._closing.set()  # running downloads stop at their next read
        self._pool.shutdown(wait=False, cancel_futures=True)
        for uri in self._held.values():
            locations.release(uri)
        self._held.clear()
        self.store.close()

    def _item_through(self, item, *args, **kwargs):
        """The item left the pipelines: the local copy of its object is no longer needed."""
        uri = self._held.pop(id(item), None)
        if uri is not None:
            locations.release(uri)

    async def _persist(self, item: VideoItem, staged: Path, path: str) -> str:
        """``store.persist`` in a thread (an upload may take as long as a download)."""
        try:
            location = await self.in_thread(self.store.persist, staged, path, timeout=self.limits.timeout)
        except OSError as exc:
            raise MediaError("store_error", str(exc)) from exc
        if locations.is_remote(location):
            self._held[id(item)] = location
        return location

    # -- the item entry point -----------------------------------------------------------
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
        if not item.path:
            raise MediaError("missing_file", "no such file")
        if locations.is_remote(item.path):  # an object listed in a bucket: read where it lies
            item.size_bytes = locations.size(item.path)
        else:
            path = Path(item.path)
            if not path.is_file():
                raise MediaError("missing_file", "no such file")
            item.size_bytes = path.stat().st_size
        item.sha256 = None  # identity comes from the bytes only (the dedup stage hashes them)
        if not item.size_bytes:
            raise MediaError("empty_file", "0 bytes")
        item.fetched_at = item.fetched_at or utcnow()
        return "local"

    # -- direct files -------------------------------------------------------------------
    async def _files(self, item: VideoItem) -> None:
        scheme = urlsplit(item.url).scheme.lower()
        if scheme not in self.schemes or scheme not in ("http", "https"):
            raise MediaError("bad_scheme", f"{scheme or 'no'} scheme")
        headers = dict(self.headers)
        if item.page_url and item.page_url.startswith(("http://", "https://")):
            headers["Referer"] = item.page_url
        staging = self.store.staging_dir()
        fd, name = tempfile.mkstemp(prefix="dl-", suffix=".part", dir=staging)
        os.close(fd)
        staged = Path(name)
        try:
            fetched = await self._fetch(item.url, staged, headers)
            path = f"full/{fetched.sha256}{_extension(fetched.url, item.url)}"
            item.path = await self._persist(item, staged, path)
        finally:
            staged.unlink(missing_ok=True)
        item.size_bytes, item.sha256 = fetched.size, fetched.sha256
        self.crawler.stats.inc_value(f"pipelines/{self.stage}/bytes", fetched.size)
        if fetched.redirects:
            self.crawler.stats.inc_value(f"pipelines/{self.stage}/redirects", len(fetched.redirects))

    async def _fetch(self, url: str, staged: Path, headers: dict) -> Fetched:
        """``fetch`` in the download pool, within the slots, retried on transient failures."""
        loop = asyncio.get_running_loop()
        host = (urlsplit(url).hostname or "").lower()
        if len(self._hosts) > 10_000:  # a long crawl meets many hosts: start their slots afresh
            self._hosts = {h: slot for h, slot in self._hosts.items() if slot.locked()}  # (full ones kept)
        slot = self._hosts.setdefault(host, asyncio.Semaphore(self.per_host))
        check = self._hop_check(loop)
        attempt = 0
        while True:
            async with self._slots, slot:
                try:
                    return await loop.run_in_executor(
                        self._pool,
                        lambda: fetch(url, staged, guard=self.guard, limits=self.limits, headers=headers,
                                      check=check, cancel=self._closing),  # fmt: skip
                    )
                except MediaError as exc:
                    if exc.code not in self.retry_codes or attempt >= self.retries or self._closing.is_set():
                        raise
            attempt += 1
            self.crawler.stats.inc_value(f"pipelines/{self.stage}/retries")

    def _hop_check(self, loop):
        """The per-hop refusals besides netguard: the opt-out list, then robots.txt (on the loop)."""

        def check(url: str) -> None:
            if self.optout and self.optout.match(url):
                raise MediaError(OPTED_OUT, LISTED)
            if self.obey_robots and self._robots_middleware() is not None:
                future = asyncio.run_coroutine_threadsafe(self._robots_allows(url), loop)
                try:
                    allowed = future.result(timeout=self.limits.timeout)
                except TimeoutError:
                    future.cancel()
                    raise MediaError("timeout", "robots.txt did not answer in time") from None
                if not allowed:
                    raise MediaError("robots_txt_disallowed", url[:200])

        return check

    def _robots_middleware(self) -> RobotsTxtMiddleware | None:
        if self._robots is None:
            engine = getattr(self.crawler, "engine", None)
            manager = getattr(getattr(engine, "downloader", None), "middleware", None)
            found = [m for m in getattr(manager, "middlewares", ()) if isinstance(m, RobotsTxtMiddleware)]
            self._robots = found[0] if found else False
        return self._robots or None

    async def _robots_allows(self, url: str) -> bool:
        try:
            await self._robots.process_request(Request(url, headers=self.headers))
        except IgnoreRequest:
            return False
        return True

    # -- yt-dlp ---------------------------------------------------------------------------
    async def _ytdlp(self, item: VideoItem) -> None:
        reason = await self.in_thread(refusal, item.url, self.policy, timeout=30)
        if reason:
            raise MediaError(reason, "refused by crawler.netguard")
        tmp = Path(tempfile.mkdtemp(prefix="ytdlp-", dir=self.store.staging_dir()))
        try:
            async with self._slots:  # a yt-dlp child is a download too (and a process)
                result = await self._run_ytdlp(item.url, tmp)
            if not result.get("ok"):
                raise MediaError(result.get("code") or "ytdlp_error", result.get("message") or "")
            src = Path(result["file"])
            digest = await self.in_thread(sha256_file, src, timeout=self.media_timeout)
            size = src.stat().st_size
            item.path = await self._persist(item, src, f"full/{digest}{safe_extension(src.name)}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        item.size_bytes = size
        item.sha256 = digest
        self._apply_info(item, result.get("info") or {})

    async def _run_ytdlp(self, url: str, tmp: Path) -> dict:
        job = {"url": url, "dir": str(tmp), "format": self.ytdlp_format, "max_bytes": self.max_bytes,
               "max_duration": self.max_duration, "socket_timeout": 30,
               "policy": policy_text(self.settings.get("ALLOW_PRIVATE_NETWORKS")),
               "dns_ttl": self.settings.getfloat("NETGUARD_DNS_TTL", 60.0)}  # fmt: skip
        job_file, err_file = tmp.parent / f"{tmp.name}.job.json", tmp.parent / f"{tmp.name}.stderr"
        job_file.write_text(json.dumps(job))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        try:
            with open(err_file, "wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "crawler.ytdlp_guard", str(job_file), env=env, cwd=str(ROOT),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
                    start_new_session=True,  # its own process group: a kill takes ffmpeg with it
                )  # fmt: skip
                stopped = await self._watch(proc, tmp)
            if stopped is not None:
                raise stopped
            try:
                return json.loads((tmp / "result.json").read_text())
            except (OSError, ValueError):
                lines = err_file.read_text(errors="replace").strip().splitlines()
                raise MediaError("ytdlp_error", (lines[-1] if lines else f"exit {proc.returncode}")[:300]) from None
        finally:
            job_file.unlink(missing_ok=True)
            err_file.unlink(missing_ok=True)

    async def _watch(self, proc, tmp: Path) -> MediaError | None:
        """Wait for the child; kill its group past the deadline or the size cap."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ytdlp_timeout
        error = None
        while True:
            try:
                await asyncio.wait_for(proc.wait(), 0.5)
                return None
            except asyncio.TimeoutError:
                pass
            if loop.time() > deadline:
                error = MediaError("timeout", f"yt-dlp ran over {self.ytdlp_timeout:g}s")
            elif _folder_bytes(tmp) > self.max_bytes:
                error = MediaError("too_large", f"yt-dlp passed MEDIA_MAX_BYTES={self.max_bytes}")
            elif self._closing.is_set():
                error = MediaError("timeout", "cancelled (the crawl is closing)")
            if error is not None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
                return error

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
