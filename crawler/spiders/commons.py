"""CommonsSpider: the video files of a Wikimedia Commons category, with licence, author and description."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import scrapy

from crawler.extract import _clean, html_text
from crawler.items import VideoItem
from crawler.netguard import scheme_refusal
from crawler.spiders.base import RedisBaseSpider, bounded_int

# extmetadata fields asked for (iiextmetadatafilter keeps the answers small).
EXTMETADATA = ("ObjectName", "ImageDescription", "Artist", "LicenseShortName", "LicenseUrl", "UsageTerms",
               "AttributionRequired", "DateTimeOriginal", "DateTime", "Categories")  # fmt: skip
LANGUAGE_LABEL = re.compile(r'<span class="language[^"]*"[^>]*>.*?</span>', re.S)  # "English: "
DATETIME_ATTR = re.compile(r'<time[^>]*\sdatetime="([^"]+)"')


def category_title(value: str) -> str:
    """``Category:<name>`` for a name given with or without the prefix (underscores as spaces)."""
    name = value.strip().replace("_", " ")
    if name.lower().startswith("category:"):
        name = name.split(":", 1)[1].strip()
    if not name:
        raise ValueError("category must name a Commons category, e.g. -a category='Videos of birds'")
    return f"Category:{name}"


def api_url(base: str, category: str, limit: int, cont: dict | None = None) -> str:
    """One categorymembers page of files with their imageinfo (url, mime, size, extmetadata)."""
    params = {"action": "query", "format": "json", "formatversion": "2", "generator": "categorymembers",
              "gcmtitle": category, "gcmtype": "file", "gcmlimit": str(limit), "prop": "imageinfo",
              "iiprop": "url|mime|size|mediatype|extmetadata", "iiurlwidth": "640",
              "iiextmetadatafilter": "|".join(EXTMETADATA)}  # fmt: skip
    params.update({k: str(v) for k, v in (cont or {}).items()})
    return f"{base}?{urlencode(params)}"


def pages_of(data: dict) -> list[dict]:
    """The answer's pages, as a list (``formatversion=2``) or a dict by page id (version 1)."""
    pages = (data.get("query") or {}).get("pages") if isinstance(data, dict) else None
    if isinstance(pages, dict):
        pages = list(pages.values())
    return [p for p in pages or [] if isinstance(p, dict)]


def is_video(info: dict) -> bool:
    mediatype = str(info.get("mediatype") or "").upper()
    mime = str(info.get("mime") or "").lower()
    if mediatype:
        return mediatype == "VIDEO"
    return mime.startswith("video/")


def item_from_page(page: dict) -> VideoItem | None:
    """The item for one file page of the answer, or None when it is no video."""
    infos = page.get("imageinfo")
    info = infos[0] if isinstance(infos, list) and infos and isinstance(infos[0], dict) else None
    if info is None or not isinstance(info.get("url"), str) or not is_video(info):
        return None
    ext = info.get("extmetadata") if isinstance(info.get("extmetadata"), dict) else {}

    def raw(name: str):
        field = ext.get(name)
        return field.get("value") if isinstance(field, dict) else None

    def text(name: str) -> str | None:
        value = raw(name)
        return html_text(LANGUAGE_LABEL.sub("", value) if isinstance(value, str) else value)

    date = raw("DateTimeOriginal")
    when = DATETIME_ATTR.search(date) if isinstance(date, str) else None  # <time datetime="...">

    title = str(page.get("title") or "")
    file_title = title.split(":", 1)[1].rsplit(".", 1)[0] if ":" in title else None
    duration = info.get("duration")
    extra = {"pageid": page.get("pageid"), "license_name": text("LicenseShortName"),
             "usage_terms": text("UsageTerms"), "attribution_required": text("AttributionRequired"),
             "mime": info.get("mime")}  # fmt: skip
    categories = [c for c in (_clean(c) for c in (text("Categories") or "").split("|")) if c]
    return VideoItem(
        url=info["url"], source="commons", download_via="files", page_url=info.get("descriptionurl"),
        title=text("ObjectName") or _clean(file_title), description=text("ImageDescription"),
        uploader=text("Artist"), license=_clean(raw("LicenseUrl")) or text("LicenseShortName"),
        published=(when and when.group(1)) or text("DateTimeOriginal") or text("DateTime"), thumbnail=info.get("thumburl"),
        duration_hint=float(duration) if isinstance(duration, (int, float)) else None, tags=categories,
        extra={k: v for k, v in extra.items() if v is not None},
    )  # fmt: skip


class CommonsSpider(RedisBaseSpider):
    """Wikimedia Commons: ``scrapy crawl commons -a category='Videos of Big Buck Bunny'``.

    The MediaWiki API (``COMMONS_API_URL``) lists the category's files with ``generator=
    categorymembers`` and their ``imageinfo`` (``COMMONS_LIMIT`` a page), following the
    answer's ``continue`` values. Only videos are taken (``mediatype`` VIDEO, else a
    ``video/`` mime type); each item has the file URL, its description page, the licence
    (``LicenseUrl``, else ``LicenseShortName``; the short name also in ``extra``), the author
    (``Artist``), the description (``ImageDescription``) as plain text, the date and the
    categories as tags. Every page request goes through the shared scheduler; videos already
    seen on this Redis are not yielded again. API calls skip robots.txt (Commons' robots.txt
    closes ``/w/`` to crawlers; the API is meant for programs that send a User-Agent).
    """

    name = "commons"
    start_arg = "category"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.limit = bounded_int(crawler.settings, "COMMONS_LIMIT", 50, 1, 500)
        return spider

    @property
    def base(self) -> str:
        return self.settings.get("COMMONS_API_URL", "https://commons.wikimedia.org/w/api.php")

    def start_payload_url(self, value: str) -> str:
        return category_title(value)

    def make_start_request(self, url: str, meta: dict):
        if not url.startswith(("http://", "https://")):
            try:
                url = api_url(self.base, category_title(url), self.limit)
            except ValueError:
                self.count("bad_payload")
                return []
        return self.api_request(url)

    def api_request(self, url: str, first_url: str | None = None) -> scrapy.Request:
        """A request for ``url``; ``first_url`` is the query's first page (continuations add to it)."""
        return scrapy.Request(url, callback=self.parse_api, errback=self.on_error, dont_filter=True,
                              meta={"dont_obey_robotstxt": True, "first_url": first_url or url})  # fmt: skip

    def on_error(self, failure):
        self.count(f"api_errors/{failure.type.__name__}")

    def parse_api(self, response):
        try:
            data = json.loads(response.text)
        except (ValueError, AttributeError):
            self.count("api_errors/bad_json")
            return
        if not isinstance(data, dict):
            self.count("api_errors/bad_json")
            return
        if isinstance(data.get("error"), dict):
            code = data["error"].get("code", "unknown")
            self.count(f"api_errors/{code}")
            self.logger.error("Commons API error %s: %s", code, str(data["error"].get("info"))[:300])
            return
        self.count("api_pages")
        items = []
        for page in pages_of(data):
            item = item_from_page(page)
            if item is None:
                self.count("files_not_video")
                continue
            reason = scheme_refusal(item.url)
            if reason:
                item.reject("crawl", reason)
            items.append(item)
        for item, fresh in zip(items, self.first_sightings([i.url for i in items])):
            if fresh:
                yield self.emit(item)
            else:
                self.count("videos_seen_before")
        cont = data.get("continue")
        if isinstance(cont, dict) and cont:
            first = response.meta.get("first_url") or response.url
            params = dict(parse_qsl(urlsplit(first).query))
            params.update({k: str(v) for k, v in cont.items()})
            yield self.api_request(f"{first.split('?', 1)[0]}?{urlencode(params)}", first)
