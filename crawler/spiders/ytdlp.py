"""YtdlpSpider: resolve platform URLs with yt-dlp (playlists and channels expand) into video items."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import scrapy

from crawler.errors import REJECT_CODES
from crawler.items import VideoItem
from crawler.netguard import UNRESOLVABLE, Guard, NetPolicy, Refused, refusal
from crawler.spiders.base import RedisBaseSpider
from crawler.ytdlp_guard import GUARDED_OPTIONS, guarded


def _published(info: dict) -> str | None:
    date = info.get("upload_date") or info.get("release_date")
    if isinstance(date, str) and len(date) == 8 and date.isdigit():
        return f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return date if isinstance(date, str) else None


def error_code(exc: BaseException) -> str:
    """A stable reason code for a yt-dlp resolve error."""
    text = str(exc).lower()
    if "unsupported url" in text:
        return "unsupported_url"
    if "private" in text or "sign in" in text or "login" in text or "members" in text:
        return "login_required"
    if "geo" in text and "restrict" in text or "not available in your country" in text:
        return "geo_restricted"
    if "unavailable" in text or "removed" in text or "404" in text:
        return "unavailable"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "unable to download" in text or "http error" in text or "connection" in text:
        return "network_error"
    return "extractor_error"


class YtdlpSpider(RedisBaseSpider):
    """Resolves each start URL with yt-dlp in a thread, with a timeout.

    ``scrapy crawl ytdlp -a url=https://www.youtube.com/playlist?list=...``. A playlist or
    channel is expanded flat first (``extract_flat="in_playlist"``); each entry that is only a
    reference is then resolved as its own request, through the shared Redis scheduler, so
    several processes split a big playlist and none resolves an entry twice. One item per
    video, ``download_via="ytdlp"``, ``platform_id="<extractor_key>:<id>"``. A URL that
    cannot be resolved yields an item failed at stage ``resolve`` with a reason code
    (``timeout``, ``unsupported_url``, ``unavailable``, ``login_required``...).

    Every connection yt-dlp opens while resolving (the page, extractor API calls, redirects)
    passes crawler.netguard (``crawler.ytdlp_guard.guarded``): a refused one rejects the URL
    at stage ``resolve`` with the guard's code (``private_address``...), whatever yt-dlp
    made of the failure.
    """

    name = "ytdlp"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.allow_private = NetPolicy.from_settings(crawler.settings)
        spider.guard = Guard(spider.allow_private)
        spider.timeout = crawler.settings.getfloat("YTDLP_RESOLVE_TIMEOUT", 120)
        spider.max_entries = crawler.settings.getint("YTDLP_MAX_ENTRIES", 0)
        return spider

    def make_start_request(self, url: str, meta: dict):
        return self.resolve_request(url, meta, flat=True, dont_filter=True)

    def resolve_request(self, url: str, meta: dict | None = None, flat: bool = False,
                        dont_filter: bool = False) -> scrapy.Request:
        """A work token (a ``data:`` URL naming ``url``, so the dupefilter sees each URL once)."""
        meta = dict(meta or {}, resolve_url=url, flat=flat, dont_obey_robotstxt=True)
        return scrapy.Request("data:," + quote(url, safe=""), callback=self.resolve, meta=meta,
                              dont_filter=dont_filter)  # fmt: skip

    def _extract(self, url: str, flat: bool) -> dict | None:
        import yt_dlp

        opts = {
            "quiet": True, "no_warnings": True, "skip_download": True, "noprogress": True,
            "extract_flat": "in_playlist" if flat else False, "socket_timeout": 30,
            "ignore_no_formats_error": True, "logger": _QuietLogger(self.logger), **GUARDED_OPTIONS,
        }  # fmt: skip
        if self.max_entries:
            opts["playlistend"] = self.max_entries
        with guarded(self.guard) as refusals:  # this thread's connections: yt-dlp's own
            try:
                with yt_dlp.YoutubeDL(opts) as ydl:
                    info = ydl.extract_info(url, download=False)
            except Exception:
                if refusals:
                    raise Refused(refusals.code, refusals.describe()) from None
                raise
        if refusals:
            raise Refused(refusals.code, refusals.describe())
        return info

    async def resolve(self, response):
        url = response.meta["resolve_url"]
        page_url = response.meta.get("page_url")
        reason = await asyncio.to_thread(refusal, url, self.allow_private)
        if reason:
            item = VideoItem(url=url, source="ytdlp", download_via="ytdlp", page_url=page_url)
            if reason == UNRESOLVABLE:
                item.fail("crawl", reason)  # DNS may answer later: retryable
            else:
                item.reject("crawl", reason)
            yield self.emit(item)
            return
        try:
            info = await asyncio.wait_for(
                asyncio.to_thread(self._extract, url, response.meta.get("flat", False)), self.timeout
            )
        except asyncio.TimeoutError:
            info, code, msg = None, "timeout", f"no answer in {self.timeout:g} s"
        except Refused as exc:  # netguard refused a request yt-dlp made: a verdict, not a failure
            self.count(f"resolve_refused/{exc.code}")
            item = VideoItem(url=url, source="ytdlp", download_via="ytdlp", page_url=page_url)
            record = item.reject if exc.code in REJECT_CODES else item.fail  # unresolvable: DNS may answer later
            yield self.emit(record("resolve", exc.code, str(exc).split(": ", 2)[-1]))
            return
        except Exception as exc:  # noqa: BLE001 - yt-dlp raises many kinds; each is recorded
            info, code, msg = None, error_code(exc), str(exc).splitlines()[0][:300]
        else:
            code, msg = ("no_info", "yt-dlp returned nothing") if not info else (None, None)
        if code:
            self.count(f"resolve_errors/{code}")
            item = VideoItem(url=url, source="ytdlp", download_via="ytdlp", page_url=page_url)
            yield self.emit(item.fail("resolve", code, msg))
            return
        for out in self.expand(info, url):
            if isinstance(out, VideoItem):
                if self.first_sighting(out.url):
                    yield self.emit(out)
                else:
                    self.count("videos_seen_before")
            else:
                yield out

    def expand(self, info: dict, asked_url: str):
        """Items for resolved videos, requests for entries that are only references."""
        kind = info.get("_type", "video")
        if kind in ("url", "url_transparent"):
            yield self.resolve_request(info["url"], {"page_url": asked_url})
            return
        if kind not in ("playlist", "multi_video"):
            yield self.to_item(info, asked_url)
            return
        self.count("playlists")
        page = info.get("webpage_url") or asked_url
        n = 0
        for entry in info.get("entries") or []:
            if not entry:
                self.count("playlist_entries_missing")
                continue
            n += 1
            if entry.get("_type") in ("url", "url_transparent") or not (entry.get("formats") or entry.get("url")):
                target = entry.get("url") or entry.get("webpage_url")
                if target:
                    yield self.resolve_request(target, {"page_url": page})
                continue
            yield self.to_item(entry, page, playlist_page=page)
        self.count("playlist_entries", n)
        if not n:
            self.count("playlists_empty")

    @staticmethod
    def to_item(info: dict, asked_url: str, playlist_page: str | None = None) -> VideoItem:
        url = info.get("webpage_url") or info.get("original_url") or asked_url
        if playlist_page and url == playlist_page and info.get("url"):
            url = info["url"]  # entries of one generic page share its URL: use the media URL
        key = info.get("extractor_key") or info.get("ie_key") or info.get("extractor")
        vid = info.get("id")
        tags = [t for t in (info.get("tags") or []) if isinstance(t, str)]
        duration = info.get("duration")
        return VideoItem(
            url=url, source="ytdlp", download_via="ytdlp",
            page_url=playlist_page or (asked_url if asked_url != url else None),
            title=info.get("title"), description=info.get("description"),
            uploader=info.get("uploader") or info.get("channel") or info.get("creator"),
            license=info.get("license"), published=_published(info), tags=tags,
            view_count=info.get("view_count"),
            duration_hint=float(duration) if isinstance(duration, (int, float)) else None,
            thumbnail=info.get("thumbnail"), extractor=key,
            platform_id=f"{key}:{vid}" if key and vid else None,
        )  # fmt: skip


class _QuietLogger:
    """yt-dlp logger that sends its messages to the spider's log at debug level."""

    def __init__(self, logger):
        self.logger = logger

    def debug(self, msg):
        self.logger.debug(msg)

    info = debug

    def warning(self, msg):
        self.logger.debug(msg)

    def error(self, msg):
        self.logger.debug(msg)
