"""UrlsSpider: a URL list (csv, tsv, jsonl, parquet, txt) as img2dataset / video2dataset take, streamed."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import decimal
import gzip
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import scrapy
from scrapy import signals

from crawler.extract import MANIFEST_EXTENSIONS, _ext, platform_extractor
from crawler.items import VideoItem
from crawler.media_types import VIDEO_EXTENSIONS
from crawler.netguard import scheme_refusal
from crawler.spiders.base import RedisBaseSpider, bounded_int

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt"}  # fmt: skip
# Fields a row may fill by column name; every other column goes to ``item.extra``.
ROW_FIELDS = ("caption", "title", "license", "description")
# Hosts whose page URLs yt-dlp downloads. Checking every extension-less URL against yt-dlp's
# ~1,800 extractors costs ~3 ms a row, too much for millions of rows: only these hosts are.
PLATFORM_HOSTS = frozenset(
    "youtube.com youtu.be vimeo.com dailymotion.com tiktok.com twitch.tv bilibili.com facebook.com "
    "instagram.com twitter.com x.com rumble.com odysee.com streamable.com peertube.tv".split()
)
csv.field_size_limit(16 * 1024 * 1024)  # long captions


def file_format(path: str, given: str | None = None) -> str:
    """``csv`` | ``tsv`` | ``jsonl`` | ``parquet`` | ``txt``, from ``-a format=`` or the suffix."""
    if given:
        if given not in set(FORMATS.values()):
            raise ValueError(f"format must be one of {sorted(set(FORMATS.values()))}, got {given!r}")
        return given
    name = path.lower().removesuffix(".gz")
    fmt = FORMATS.get(Path(name).suffix)
    if fmt is None:
        raise ValueError(f"cannot tell the format of {path!r} from its name; "
                         "pass -a format=csv|tsv|jsonl|parquet|txt")  # fmt: skip
    return fmt


def _open_text(path: str):
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _jsonable(value):
    """A JSON-safe copy of a cell (dates as ISO text, NaN as None, bytes left out)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


class Columns:
    """Which column holds what; turns one raw row into the compact dict a payload carries."""

    def __init__(self, url_col: str = "url", caption_col: str = "caption"):
        if not url_col or not caption_col:
            raise ValueError("url_col and caption_col must be column names")
        self.url = url_col
        self.names = {caption_col: "caption", "title": "title", "license": "license", "description": "description"}

    def row(self, raw: dict) -> dict | None:
        """``{"url", "caption"?, "title"?, ..., "extra"?}``, or None when the row has no URL."""
        url = raw.get(self.url)
        if not isinstance(url, str) or not url.strip():
            return None
        out: dict = {"url": url.strip()}
        extra = {}
        for key, value in raw.items():
            if key == self.url or key is None:
                continue
            field = self.names.get(key)
            if field:
                if value not in (None, ""):
                    out[field] = str(_jsonable(value))
            else:
                extra[str(key)] = _jsonable(value)
        if extra:
            out["extra"] = extra
        return out


def header(path: str, fmt: str) -> list[str] | None:
    """The column names a file declares (None for jsonl/txt, whose rows name their own)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    if fmt in ("csv", "tsv"):
        with _open_text(path) as f:
            return next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), [])
    return None


def raw_rows(path: str, fmt: str, batch_rows: int = 1000) -> Iterator[dict | None]:
    """Every row of the file as a dict, read as a stream (None for a line that is not a row)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()
        return
    with _open_text(path) as f:
        if fmt in ("csv", "tsv"):
            yield from csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
        elif fmt == "txt":
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield {"url": line}
        else:
            for line in f:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                yield obj if isinstance(obj, dict) else None


def chunks(path: str, fmt: str, columns: Columns, size: int, counts: dict) -> Iterator[list[dict]]:
    """Lists of at most ``size`` rows; rows without a URL are counted in ``counts``, not kept."""
    chunk: list[dict] = []
    for raw in raw_rows(path, fmt, batch_rows=size):
        if fmt == "txt" and raw is not None:
            raw = {columns.url: raw["url"]}
        row = columns.row(raw) if raw is not None else None
        if row is None:
            counts["rows_without_url" if raw is not None else "bad_rows"] += 1
            continue
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def download_via(url: str) -> tuple[str, str | None]:
    """(``files`` | ``ytdlp``, yt-dlp extractor) for a listed URL."""
    ext = _ext(url)
    if ext in VIDEO_EXTENSIONS:
        return "files", None
    if ext in MANIFEST_EXTENSIONS:
        return "ytdlp", None
    host = (urlsplit(url).hostname or "").lower()
    if any(host == h or host.endswith("." + h) for h in PLATFORM_HOSTS):
        extractor = platform_extractor(url)
        if extractor:
            return "ytdlp", extractor
    return "files", None  # the download pipeline judges the bytes (not_a_video...)


class UrlsSpider(RedisBaseSpider):
    """Yields one item per row of a URL list: column ``url`` (``-a url_col=``), optional
    ``caption`` (``-a caption_col=``), ``title``, ``license``, ``description``; every other
    column is kept in ``item.extra``.

    ``scrapy crawl urls -a path=urls.parquet``: this process streams the file (csv/tsv with
    the csv module, jsonl line by line, parquet by ``iter_batches``; ``.gz`` for text formats)
    and pushes rows into ``urls:start_urls`` in payloads of ``URLS_CHUNK_ROWS`` rows, pausing
    while ``URLS_MAX_PENDING_CHUNKS`` payloads wait, so neither this process nor Redis holds
    the file. Every process on the same Redis (``scrapy crawl urls`` with no argument waits for
    payloads) takes payloads and yields their items; this one closes once the file is read
    and nothing has happened for ``SPIDER_IDLE_CLOSE_SECONDS``. URLs seen before on this Redis
    are skipped, so a second run yields only new rows. A single URL pushed by hand
    (``redis-cli lpush urls:start_urls https://.../clip.mp4``) is one row.

    Direct files (and unknown URLs) are downloaded as files; HLS/DASH manifests and pages of
    the video platforms in ``PLATFORM_HOSTS`` through yt-dlp. Rows with a URL scheme other
    than http(s) are yielded rejected (``scheme_not_allowed``), rows without a URL are counted.
    """

    name = "urls"
    start_arg = "path"

    def __init__(self, *args, url_col="url", caption_col="caption", format=None, **kwargs):  # noqa: A002
        super().__init__(*args, **kwargs)
        self.path, self.start_value = self.start_value, None  # read here, never pushed
        self.columns = Columns(url_col, caption_col)
        self.format = None
        if self.path:
            self.path = str(Path(self.path).expanduser())
            self.format = file_format(self.path, format)
            self._check_file()
        self._reader: asyncio.Task | None = None

    def _check_file(self) -> None:
        if not Path(self.path).is_file():
            raise ValueError(f"no such file: {self.path}")
        names = header(self.path, self.format)
        if names is not None and self.columns.url not in names:
            raise ValueError(f"{self.path} has no column {self.columns.url!r} (columns: "
                             f"{', '.join(names[:20]) or 'none'}); pass -a url_col=NAME")  # fmt: skip

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.chunk_rows = bounded_int(s, "URLS_CHUNK_ROWS", 500, 1, 1_000_000)
        spider.max_pending = bounded_int(s, "URLS_MAX_PENDING_CHUNKS", 64, 1, 1_000_000)
        if spider.path:
            spider.close_when_idle(s)
            crawler.signals.connect(spider._open_reader, signal=signals.spider_opened)
            crawler.signals.connect(spider._close_reader, signal=signals.spider_closed)
        return spider

    # -- the reading process ---------------------------------------------------------------
    def _open_reader(self, spider):
        self._reader = asyncio.ensure_future(self._read(self.path, self.format))

    def _close_reader(self, spider):
        if self._reader and not self._reader.done():
            self._reader.cancel()

    async def _read(self, path: str, fmt: str) -> None:
        uri = Path(path).absolute().as_uri()
        counts = {"rows_without_url": 0, "bad_rows": 0}
        rows = chunks(path, fmt, self.columns, self.chunk_rows, counts)
        n_rows = n_chunks = 0
        started = time.monotonic()
        try:
            while True:
                while self.count_size(self.redis_key) >= self.max_pending:
                    await asyncio.sleep(0.1)  # back-pressure: the consumers are behind
                chunk = await asyncio.to_thread(next, rows, None)
                if chunk is None:
                    break
                payload = json.dumps({"url": f"{uri}#row={n_rows}", "meta": {"rows": chunk}}, ensure_ascii=False)
                self.server.rpush(self.redis_key, payload)
                n_rows, n_chunks = n_rows + len(chunk), n_chunks + 1
                if self.crawler.engine.spider_is_idle():
                    self.schedule_next_requests()  # don't wait for the next idle signal
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a file that breaks half-way: what was read stays queued
            self.count("read_errors")
            self.logger.error("reading %s stopped after %d rows: %s: %s", path, n_rows, type(exc).__name__, exc)
        finally:
            self.count("rows_read", n_rows)
            for key, n in counts.items():
                if n:
                    self.count(key, n)
            self.spider_idle_start_time = time.time()
        self.logger.info("read %d rows in %d payloads from %s in %.1f s", n_rows, n_chunks, path,
                         time.monotonic() - started)  # fmt: skip

    def spider_idle(self):
        if self._reader is not None and not self._reader.done():
            self.spider_idle_start_time = time.time()  # still reading: never idle
        return super().spider_idle()

    # -- every process ---------------------------------------------------------------------
    def make_start_request(self, url: str, meta: dict):
        rows = meta.get("rows")
        if rows is None:
            if url.startswith("file:") or url.startswith("/"):
                self.count("bad_payload")  # a file payload: files are read by `-a path=` only
                self.logger.error("a URL list must be read with -a path= by a process that has it: %s", url[:200])
                return []
            rows = [dict({k: v for k, v in meta.items() if k in ROW_FIELDS or k == "extra"}, url=url)]
        if not isinstance(rows, list):
            self.count("bad_payload")
            return []
        return scrapy.Request("data:,", callback=self.parse_rows, dont_filter=True,
                              meta={"rows": rows, "dont_obey_robotstxt": True})  # fmt: skip

    def parse_rows(self, response):
        rows = [r for r in response.meta["rows"] if isinstance(r, dict) and isinstance(r.get("url"), str)]
        self.count("rows", len(rows))
        for row, fresh in zip(rows, self.first_sightings([r["url"] for r in rows])):
            if not fresh:
                self.count("videos_seen_before")
                continue
            yield self.emit(self.to_item(row))

    @staticmethod
    def to_item(row: dict) -> VideoItem:
        url = row["url"]
        via, extractor = download_via(url)
        extra = row.get("extra")
        item = VideoItem(url=url, source="urls", download_via=via, extractor=extractor,
                         caption=row.get("caption"), title=row.get("title"), license=row.get("license"),
                         description=row.get("description"),
                         extra=extra if isinstance(extra, dict) else {})  # fmt: skip
        reason = scheme_refusal(url)
        if reason:
            item.reject("crawl", reason)
        return item
