"""WebSpider: crawl a site inside its start domain(s); yield every video its pages, sitemaps and feeds show."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import StopDownload
from scrapy.http import TextResponse

from crawler.extract import ROBOTS_OPT_OUT, VideoCandidate, extract_page
from crawler.feeds import FeedInfo, FeedVideo, looks_like_feed, parse_feed, sitemaps_in_robots
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
MAX_FEED_HOPS = 4  # robots.txt -> sitemap index -> sitemap ...: deeper nesting is not followed


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

    Sitemaps and feeds (crawler/feeds.py) are read wherever they are met: a start URL or a
    link that is a sitemap index, a sitemap (``.xml.gz`` too), a video sitemap, an RSS / Media
    RSS / Atom feed, or ``/robots.txt`` (its ``Sitemap:`` lines). ``-a sitemap=1`` (payload
    meta ``{"sitemap": true}``) also reads the start host's robots.txt ``Sitemap:`` lines
    (``/sitemap.xml`` when it has none). Their videos are yielded with what the feed says
    (title, description, duration, date...), their pages crawled like links: a sitemap's
    entries count as one link from where the sitemap was found, the hops from robots.txt and
    sitemap indexes to sitemaps do not count. Sitemaps are fetched on every run (new entries
    appear there), up to ``WEB_SITEMAP_MAX_BYTES``.
    """

    name = "web"

    def __init__(self, *args, depth=None, sitemap=None, **kwargs):
        super().__init__(*args, **kwargs)
        if depth is not None:
            try:
                self.start_meta["depth"] = int(depth)
            except ValueError:
                raise ValueError(f"depth must be an integer, got {depth!r}") from None
        if sitemap is not None:
            if str(sitemap).lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError(f"sitemap must be 1 or 0, got {sitemap!r}")
            self.start_meta["sitemap"] = str(sitemap).lower() in ("1", "true", "yes")

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.allow_private = NetPolicy.from_settings(crawler.settings)
        spider.default_depth = crawler.settings.getint("WEB_DEFAULT_DEPTH", 2)
        spider.page_max_bytes = crawler.settings.getint("WEB_PAGE_MAX_BYTES", 20 * 1024 * 1024)
        spider.sitemap_max_bytes = crawler.settings.getint("WEB_SITEMAP_MAX_BYTES", 50 * 1024 * 1024)
        crawler.signals.connect(spider.on_headers, signal=signals.headers_received)
        crawler.signals.connect(spider.on_bytes, signal=signals.bytes_received)
        return spider

    def on_headers(self, headers, body_length, request, spider):
        """Mark a 'page' whose headers say it is no page (a video?) to stop at its first bytes."""
        if spider is not self or request.callback != self.parse or request.meta.get("feed"):
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
        sitemap = meta.pop("sitemap", False)
        meta.update(max_depth=max_depth, scope=scope, depth=0, download_maxsize=self.page_max_bytes)
        start = scrapy.Request(url, callback=self.parse, errback=self.on_error, meta=meta, dont_filter=True)
        if not sitemap:
            return start
        parts = urlsplit(url)
        robots = dict(meta, robots_sitemaps=True, feed=True, feed_hops=0)
        return [start, scrapy.Request(f"{parts.scheme}://{parts.netloc}/robots.txt", callback=self.parse,
                                      errback=self.on_error, meta=robots, dont_filter=True)]  # fmt: skip

    def feed_request(self, url: str, response, scope: list[str]) -> scrapy.Request:
        """A sitemap or feed named by ``response``: fetched whole, its hop not counted as depth."""
        meta = {"feed": True, "feed_hops": response.meta.get("feed_hops", 0) + 1, "scope": scope,
                "max_depth": response.meta.get("max_depth"), "referer_page": response.url,
                "download_maxsize": self.sitemap_max_bytes}  # fmt: skip
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, meta=meta, dont_filter=True)

    def page_request(self, url: str, response, scope: list[str]) -> scrapy.Request:
        return scrapy.Request(url, callback=self.parse, errback=self.on_error,
                              meta={"max_depth": response.meta.get("max_depth"), "scope": scope,
                                    "referer_page": response.url,
                                    "feed_hops": response.meta.get("feed_hops", 0),
                                    "download_maxsize": self.page_max_bytes})  # fmt: skip

    @staticmethod
    def depth_of(response) -> int:
        """Links followed from the start to this response (sitemap hops not counted)."""
        return response.meta.get("depth", 0) - response.meta.get("feed_hops", 0)

    def on_error(self, failure):
        self.count(f"page_errors/{failure.type.__name__}")

    async def parse(self, response):
        self.count("pages")
        if isinstance(response, TextResponse) and urlsplit(response.url).path == "/robots.txt":
            for request in self.sitemaps_of_robots(response):
                yield request
            return
        feed = self.feed_of(response)
        if feed is None and (not isinstance(response, TextResponse) or response.meta.get("not_a_page")):
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
        if feed is not None:
            async for out in self.parse_feed(response, feed, scope):
                yield out
            return
        page = extract_page(response.text, response.url)
        opt_out = sorted((set(page.robots) | set(header_directives(response))) & ROBOTS_OPT_OUT)
        if opt_out:
            self.count("pages_opted_out")
        async for item in self.items(page.videos, response.url, page.keywords, opt_out):
            yield item
        nofollow = "nofollow" in page.robots or "none" in page.robots
        if nofollow or self.depth_of(response) >= response.meta.get("max_depth", self.default_depth):
            return
        for request in self.follow(page.links, response, scope):
            yield request

    async def items(self, cands: list[VideoCandidate], page_url: str, keywords: list[str], opt_out: list[str]):
        """Items for a page's (or feed's) videos not seen before, refused or opted out as they must be."""
        for cand in cands:
            if not self.first_sighting(cand.url):
                self.count("videos_seen_before")
                continue
            if isinstance(cand, FeedVideo):
                item = self.to_item(cand, cand.page_url or page_url, cand.tags)
            else:
                item = self.to_item(cand, page_url, keywords)
            if opt_out:
                item.reject("crawl", "opted_out", ",".join(opt_out))
            elif not self.optout.match(cand.url):  # a listed one is rejected by emit, no lookup needed
                reason = await asyncio.to_thread(refusal, cand.url, self.allow_private)
                if reason == UNRESOLVABLE:
                    item.fail("crawl", reason)  # DNS may answer later: retryable
                elif reason:
                    item.reject("crawl", reason)
            yield self.emit(item)

    def follow(self, links: list[str], response, scope: list[str]):
        """Page requests for the links that are fetchable and in scope."""
        for link in links:
            reason = scheme_refusal(link)
            if reason:
                self.count(f"links_refused/{reason}")
                continue
            if not in_scope(link, scope):
                self.count("links_offsite")
                continue
            yield self.page_request(link, response, scope)

    # -- sitemaps and feeds ------------------------------------------------------------------
    def feed_of(self, response) -> FeedInfo | None:
        """The sitemap or feed a response is, or None (a page, a video...)."""
        if not response.meta.get("feed"):
            if not isinstance(response, TextResponse) or response.meta.get("not_a_page"):
                return None
            if not looks_like_feed(response.body[:256]):
                return None
        return parse_feed(response.body, response.url, self.sitemap_max_bytes)

    def sitemaps_of_robots(self, response):
        scope = response.meta.get("scope") or [_scope_of(response.url)]
        locs = sitemaps_in_robots(response.text, response.url)
        if not locs and response.meta.get("robots_sitemaps"):  # -a sitemap=1: the usual place
            parts = urlsplit(response.url)
            locs = [f"{parts.scheme}://{parts.netloc}/sitemap.xml"]
        self.count("robots_sitemaps", len(locs))
        for loc in locs:
            if in_scope(loc, scope) and not scheme_refusal(loc):
                yield self.feed_request(loc, response, scope)
            else:
                self.count("links_offsite")

    async def parse_feed(self, response, feed: FeedInfo, scope: list[str]):
        self.count(f"feeds/{feed.kind}")
        directives = set(header_directives(response))
        opt_out = sorted(directives & ROBOTS_OPT_OUT)
        if opt_out:
            self.count("pages_opted_out")
        async for item in self.items(feed.videos, response.url, [], opt_out):
            yield item
        if feed.sitemaps and response.meta.get("feed_hops", 0) >= MAX_FEED_HOPS:
            self.count("sitemaps_too_deep", len(feed.sitemaps))
        else:
            for loc in feed.sitemaps:
                if in_scope(loc, scope) and not scheme_refusal(loc):
                    yield self.feed_request(loc, response, scope)
                else:
                    self.count("links_offsite")
        nofollow = bool(directives & {"nofollow", "none"})
        if nofollow or self.depth_of(response) >= response.meta.get("max_depth", self.default_depth):
            return
        for request in self.follow(feed.pages, response, scope):
            yield request

    @staticmethod
    def to_item(cand: VideoCandidate, page_url: str, keywords: list[str]) -> VideoItem:
        """The item for a candidate; ``keywords`` become its tags."""
        return VideoItem(
            url=cand.url, source="web", page_url=page_url, title=cand.title,
            description=cand.description, uploader=cand.uploader, license=cand.license,
            published=cand.published, thumbnail=cand.thumbnail, duration_hint=cand.duration_hint,
            tags=list(keywords), extractor=cand.extractor, download_via=cand.download_via,
        )  # fmt: skip
