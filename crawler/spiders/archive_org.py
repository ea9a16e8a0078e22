"""ArchiveOrgSpider: Internet Archive items from an advanced search, their video files from the metadata API."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import scrapy

from crawler.extract import html_text, parse_duration
from crawler.items import VideoItem
from crawler.media_types import has_video_extension
from crawler.spiders.base import RedisBaseSpider, bounded_int

# The archive's video formats (``files[].format``), best first: one file per original is taken,
# the first of these among its derivatives, else the original itself.
PREFERRED_FORMATS = ("h.264", "MPEG4", "h.264 IA", "h.264 HD", "512Kb MPEG4", "HiRes MPEG4", "WebM",
                     "Matroska", "Ogg Video", "QuickTime", "MPEG2", "MPEG1", "Cinepack", "Windows Media",
                     "AVI", "DivX", "Flash Video", "256Kb MPEG4", "64Kb MPEG4")  # fmt: skip
VIDEO_FORMATS = frozenset(PREFERRED_FORMATS)
IDENTIFIER = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
SEARCH_LIMIT = 10_000  # the archive pages sorted results only up to this one (archive.org/help/aboutsearch.htm)


def search_url(base: str, query: str, rows: int, page: int = 1) -> str:
    """The advanced-search URL for one page of identifiers (sorted, so pages are stable)."""
    params = [("q", query), ("fl[]", "identifier"), ("sort[]", "identifier asc"),
              ("rows", str(rows)), ("page", str(page)), ("output", "json")]  # fmt: skip
    return f"{base}/advancedsearch.php?{urlencode(params)}"


def parse_search(data: dict) -> tuple[list[str], int]:
    """(identifiers, numFound) of an advanced-search answer."""
    response = data.get("response") if isinstance(data, dict) else None
    if not isinstance(response, dict):
        return [], 0
    docs = response.get("docs") if isinstance(response.get("docs"), list) else []
    ids = [d["identifier"] for d in docs if isinstance(d, dict) and isinstance(d.get("identifier"), str)]
    try:
        found = int(response.get("numFound") or 0)
    except (TypeError, ValueError):
        found = 0
    return [i for i in ids if IDENTIFIER.match(i)], found


def _first(value) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return (value.strip() or None) if isinstance(value, str) else None


def _list(value) -> list[str]:
    if isinstance(value, str):
        value = value.split(";")
    return [v.strip() for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []


def is_video(f: dict) -> bool:
    fmt = f.get("format")
    return fmt in VIDEO_FORMATS or (fmt is None and has_video_extension(f.get("name", "")))


def video_files(files: list, every: bool = False) -> list[dict]:
    """The video files to take: one per original (the preferred format), or every one."""
    videos = [f for f in files if isinstance(f, dict) and isinstance(f.get("name"), str) and is_video(f)]
    if every:
        return videos
    by_name = {f["name"]: f for f in files if isinstance(f, dict) and isinstance(f.get("name"), str)}

    def root(f: dict) -> str:
        name, hops = f["name"], 0
        while by_name.get(name, {}).get("source") == "derivative" and by_name[name].get("original") and hops < 10:
            name, hops = by_name[name]["original"], hops + 1
        return name

    groups: dict[str, list[dict]] = {}
    for f in videos:
        groups.setdefault(root(f), []).append(f)
    rank = {fmt: i for i, fmt in enumerate(PREFERRED_FORMATS)}
    return [min(group, key=lambda f: (rank.get(f.get("format"), len(rank)), f.get("source") != "original"))
            for group in groups.values()]  # fmt: skip


def items_from_metadata(data: dict, base: str, every: bool = False) -> list[VideoItem]:
    """One item per video file of a metadata-API answer (``{}`` for an unknown identifier: none)."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or data.get("is_dark"):
        return []
    ident = _first(meta.get("identifier"))
    if not ident or not IDENTIFIER.match(ident):
        return []
    chosen = video_files(data.get("files") or [], every)
    title = _first(meta.get("title"))
    items = []
    for f in chosen:
        extra = {"identifier": ident, "collection": _list(meta.get("collection")), "file": f["name"],
                 "format": f.get("format"), "mediatype": _first(meta.get("mediatype"))}  # fmt: skip
        if _first(meta.get("rights")):
            extra["rights"] = _first(meta.get("rights"))
        items.append(VideoItem(
            url=f"{base}/download/{quote(ident)}/{quote(f['name'], safe='/')}",
            source="archive_org", download_via="files", page_url=f"{base}/details/{quote(ident)}",
            title=(_first(f.get("title")) if len(chosen) > 1 else None) or title,
            description=html_text(_first(meta.get("description"))),
            uploader="; ".join(_list(meta.get("creator"))) or None, license=_first(meta.get("licenseurl")),
            published=_first(meta.get("date")), tags=_list(meta.get("subject")),
            duration_hint=parse_duration(f.get("length")), thumbnail=f"{base}/services/img/{quote(ident)}",
            extra={k: v for k, v in extra.items() if v not in (None, [])},
        ))  # fmt: skip
    return items


class ArchiveOrgSpider(RedisBaseSpider):
    """Internet Archive: ``scrapy crawl archive_org -a query='collection:prelinger AND mediatype:movies'``
    (or ``-a identifier=<item>`` for one item).

    The advanced search (``ARCHIVE_ORG_URL/advancedsearch.php``, ``ARCHIVE_ORG_ROWS``
    identifiers a page, sorted by identifier) gives identifiers; each one's metadata
    (``/metadata/<identifier>``) gives its files, and one item is yielded per original video
    (the preferred derivative format, see ``PREFERRED_FORMATS``; ``-a files=all``: every video
    file), its URL ``/download/<identifier>/<file>``, with licence (``licenseurl``), creator,
    date, subjects as tags, and the collection, identifier and format in ``extra``. Pages and
    metadata requests go through the shared scheduler, so every process on the same Redis
    takes part; the dupefilter and the seen-video set make a second run yield only new items.
    The archive pages sorted results only up to the 10,000th: a bigger query is cut there
    (``search_truncated``, with a warning to split it, e.g. by year).
    Redis payloads: a query, a search URL, or an ``/details/<identifier>`` URL. These are API
    calls, made without reading robots.txt (the archive's API terms govern them).
    """

    name = "archive_org"
    start_arg = "query"

    def __init__(self, *args, files="best", identifier=None, **kwargs):
        super().__init__(*args, **kwargs)
        if files not in ("best", "all"):
            raise ValueError(f"files must be 'best' or 'all', got {files!r}")
        self.every_file = files == "all"
        self.start_is_identifier = bool(identifier)
        if identifier:
            if self.start_value:
                raise ValueError("give -a query= or -a identifier=, not both")
            if not IDENTIFIER.match(identifier):
                raise ValueError(f"not an Internet Archive identifier: {identifier!r}")
            self.start_value = identifier

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.rows = bounded_int(crawler.settings, "ARCHIVE_ORG_ROWS", 100, 1, 10_000)
        return spider

    @property
    def base(self) -> str:
        return self.settings.get("ARCHIVE_ORG_URL", "https://archive.org").rstrip("/")

    def start_payload_url(self, value: str) -> str:
        if self.start_is_identifier:
            return f"{self.base}/details/{value}"
        return value.strip()  # the query itself: the URL is built where the payload is read

    def make_start_request(self, url: str, meta: dict):
        details = re.fullmatch(re.escape(self.base) + r"/details/([A-Za-z0-9._-]+)/?", url)
        if details:
            return self.metadata_request(details.group(1), dont_filter=True)
        if not url.startswith(("http://", "https://")):
            url = search_url(self.base, url, self.rows)
        return self.search_request(url)

    def search_request(self, url: str) -> scrapy.Request:
        return scrapy.Request(url, callback=self.parse_search, errback=self.on_error, dont_filter=True,
                              meta={"dont_obey_robotstxt": True})  # fmt: skip

    def metadata_request(self, ident: str, dont_filter: bool = False) -> scrapy.Request:
        return scrapy.Request(f"{self.base}/metadata/{quote(ident)}", callback=self.parse_metadata,
                              errback=self.on_error, dont_filter=dont_filter,
                              meta={"dont_obey_robotstxt": True})  # fmt: skip

    def on_error(self, failure):
        self.count(f"api_errors/{failure.type.__name__}")

    def _json(self, response) -> dict | None:
        try:
            data = json.loads(response.text)
        except (ValueError, AttributeError):
            self.count("api_errors/bad_json")
            return None
        return data if isinstance(data, dict) else None

    def parse_search(self, response):
        data = self._json(response)
        if data is None:
            return
        ids, found = parse_search(data)
        self.count("search_pages")
        self.count("identifiers", len(ids))
        for ident in ids:
            yield self.metadata_request(ident)
        params = parse_qs(urlsplit(response.url).query)
        try:
            page, rows = int(params.get("page", ["1"])[0]), int(params.get("rows", [str(self.rows)])[0])
        except ValueError:
            return
        if ids and page * rows < found:
            if page * rows >= SEARCH_LIMIT:
                self.count("search_truncated")
                self.logger.warning("the archive pages only %d of the %d results of %r: split the query "
                                    "(e.g. by year) to get the rest", SEARCH_LIMIT, found,
                                    params.get("q", [""])[0])  # fmt: skip
                return
            query = params.get("q", [""])[0]
            yield self.search_request(search_url(self.base, query, rows, page + 1))

    def parse_metadata(self, response):
        data = self._json(response)
        if data is None:
            return
        items = items_from_metadata(data, self.base, self.every_file)
        if not data:
            self.count("identifiers_unknown")  # the API answers {} for an unknown identifier
        elif not items:
            self.count("items_without_video")
        fresh = self.first_sightings([i.url for i in items])
        for item, new in zip(items, fresh):
            if new:
                yield self.emit(item)
            else:
                self.count("videos_seen_before")
