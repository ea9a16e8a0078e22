"""WebSpider: crawl a website inside its start domain(s) and yield every video its pages show."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import StopDownload
from scrapy.http import TextResponse

from crawler.extract import ROBOTS_OPT_OUT, VideoCandidate, extract_page
from crawler.items import VideoItem
from crawler.media_types import SNIFF_BYTES, sniff
from crawler.netguard import UNRESOLVABLE, NetPolicy, refusal, scheme_refusal
from crawler.spiders.base import RedisBaseSpider


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _scope_of(url: str) -> str:
    host = _host(url)
    return host[4:] if host.startswith("www.") else host


def in_scope(url: str, scopes: list[str]) -> bool:
    """True if ``url``'s host is one of ``scopes`` or a subdomain of one (ports ignored)."""
    host = _host(url)
    return any(host == s or host.endswith("." + s) for s in scopes)


BOT_TOKEN = "videopipe"  # the product token of settings.USER_AGENT


def header_directives(response) -> list[str]:
    """Lower-cased X-Robots-Tag directives (``noai``, ``noindex``...), bot-prefixed ones too."""
    out = []
    for raw in response.headers.getlist(b"X-Robots-Tag"):
        bot = None
        for part in raw.decode("latin-1").split(","):
            part = part.strip().lower()
            if ":" in part:  # "otherbot: noindex" applies to that bot only, up to the next name
                bot, part = (x.strip() for x in part.split(":", 1))
            if part and bot in (None, "*", BOT_TOKEN):
                out.append(part)
    return out


class WebSpider(RedisBaseSpider):
    """Follows links inside the start URL's domain up to ``depth`` and finds videos on every page.

    ``scrapy crawl web -a url=https://example.org/videos [-a depth=2]``; Redis payloads may
    carry ``{"meta": {"depth": N}}`` (how many links deep to follow from that start). Each
    start keeps its own scope (its host, subdomains included) in the request meta, so one
    process can crawl several sites. Pages that opt out (``X-Robots-Tag`` or
    ``<meta name="robots">`` with noai/noindex/none) yield their videos as rejected items;
    video URLs that netguard refuses yield rejected items too, so nothing found is lost.
    """

    name = "web"

    def __init__(self, *args, depth=None, **kwargs):
        super().__init__(*args, **kwargs)
        if depth is not None:
            try:
                self.start_meta["depth"] = int(depth)
            except ValueError:
                raise ValueError(f"depth must be an integer, got {depth!r}") from None

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.allow_private = NetPolicy.from_settings(crawler.settings)
        spider.default_depth = crawler.settings.getint("WEB_DEFAULT_DEPTH", 2)
        spider.page_max_bytes = crawler.settings.getint("WEB_PAGE_MAX_BYTES", 20 * 1024 * 1024)
        crawler.signals.connect(spider.on_headers, signal=signals.headers_received)
        crawler.signals.connect(spider.on_bytes, signal=signals.bytes_received)
        return spider

    def on_headers(self, headers, body_length, request, spider):
        """Mark a 'page' whose headers say it is no page (a video?) to stop at its first bytes."""
        if spider is not self or request.callback != self.parse:
            return
        ctype = headers.get(b"Content-Type", b"").decode("latin-1").lower()
        if ctype and not any(t in ctype for t in ("html", "xml", "text/")):
            request.meta["not_a_page"] = True

    def on_bytes(self, data, request, spider):
        if spider is self and request.meta.get("not_a_page"):
            raise StopDownload(fail=False)  # parse() gets the first chunk, enough to sniff

    def make_start_request(self, url: str, meta: dict):
        reason = scheme_refusal(url)
        if reason:
            self.count(f"start_refused/{reason}")
            self.logger.error("start URL refused (%s): %r", reason, url[:200])
            return []
        try:
            max_depth = int(meta.pop("depth", self.default_depth))
        except (TypeError, ValueError):
            max_depth = self.default_depth
        scope = meta.pop("scope", None) or [_scope_of(url)]
        meta.update(max_depth=max_depth, scope=scope, depth=0, download_maxsize=self.page_max_bytes)
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, meta=meta,
                              dont_filter=True)  # fmt: skip

    def on_error(self, failure):
        self.count(f"page_errors/{failure.type.__name__}")

    async def parse(self, response):
        self.count("pages")
        if not isinstance(response, TextResponse) or response.meta.get("not_a_page"):
            # a link without a media extension: a video if its type or its first bytes say so
            ctype = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
            if not (ctype.startswith("video/") or sniff(response.body[:SNIFF_BYTES])):
                self.count("pages_not_html")
            elif not self.first_sighting(response.url):
                self.count("videos_seen_before")
            else:
                item = VideoItem(url=response.url, source="web", download_via="files",
                                 page_url=response.meta.get("referer_page"))  # fmt: skip
                opt_out = sorted(set(header_directives(response)) & ROBOTS_OPT_OUT)
                if opt_out:
                    item.reject("crawl", "opted_out", ",".join(opt_out))
                yield self.emit(item)
            return
        scope = response.meta.get("scope") or [_scope_of(response.url)]
        if not in_scope(response.url, scope):
            if response.meta.get("depth", 0) == 0:
                scope = [*scope, _scope_of(response.url)]  # a start URL that redirects
            else:
                self.count("pages_redirected_offsite")
                return
        page = extract_page(response.text, response.url)
        opt_out = sorted((set(page.robots) | set(header_directives(response))) & ROBOTS_OPT_OUT)
        if opt_out:
            self.count("pages_opted_out")
        for cand in page.videos:
            if not self.first_sighting(cand.url):
                self.count("videos_seen_before")
                continue
            item = self.to_item(cand, response.url, page.keywords)
            if opt_out:
                item.reject("crawl", "opted_out", ",".join(opt_out))
            else:
                reason = await asyncio.to_thread(refusal, cand.url, self.allow_private)
                if reason == UNRESOLVABLE:
                    item.fail("crawl", reason)  # DNS may answer later: retryable
                elif reason:
                    item.reject("crawl", reason)
            yield self.emit(item)
        nofollow = "nofollow" in page.robots or "none" in page.robots
        depth = response.meta.get("depth", 0)
        if nofollow or depth >= response.meta.get("max_depth", self.default_depth):
            return
        for link in page.links:
            reason = scheme_refusal(link)
            if reason:
                self.count(f"links_refused/{reason}")
                continue
            if not in_scope(link, scope):
                self.count("links_offsite")
                continue
            yield scrapy.Request(link, callback=self.parse, errback=self.on_error,
                                 meta={"max_depth": response.meta.get("max_depth"), "scope": scope,
                                       "referer_page": response.url,
                                       "download_maxsize": self.page_max_bytes})  # fmt: skip

    @staticmethod
    def to_item(cand: VideoCandidate, page_url: str, keywords: list[str]) -> VideoItem:
        return VideoItem(
            url=cand.url, source="web", page_url=page_url, title=cand.title,
            description=cand.description, uploader=cand.uploader, license=cand.license,
            published=cand.published, thumbnail=cand.thumbnail, duration_hint=cand.duration_hint,
            tags=list(keywords), extractor=cand.extractor, download_via=cand.download_via,
        )  # fmt: skip
