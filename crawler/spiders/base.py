"""The Redis behaviour every source spider shares: start URLs from Redis, JSON payloads, idle close."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import redis
from scrapy import Request, signals
from scrapy.exceptions import DontCloseSpider, ScrapyDeprecationWarning
from scrapy.utils.misc import load_object
from scrapy_redis.spiders import RedisSpider

from crawler.items import VideoItem
from crawler.keys import RedisKeys
from crawler.optout import LISTED, OPTED_OUT, OptOutList
from crawler.queue import UNRECORDED_META, Leases, LeasingScheduler, Sightings
from crawler.scripts import pipelined

# scrapy-redis 0.9.1 still passes `spider=` to the stats collector; the warning is theirs.
warnings.filterwarnings("ignore", category=ScrapyDeprecationWarning, module=r"scrapy_redis\.")


def bounded_int(settings, name: str, default: int, low: int, high: int) -> int:
    """An integer setting, ValueError when it is outside [low, high]."""
    value = settings.getint(name, default)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


class RedisBaseSpider(RedisSpider):
    """A scrapy-redis spider fed from ``<name>:start_urls``; subclasses turn starts into work.

    Starting:

    - ``scrapy crawl <name> -a url=...`` (or ``-a path=...`` for ``local``) pushes one JSON
      payload ``{"url": ..., "meta": {...}}`` into ``<name>:start_urls`` so that every process
      on the same Redis can share the work, and makes this process close once it has been idle
      for ``SPIDER_IDLE_CLOSE_SECONDS`` (unless ``MAX_IDLE_TIME_BEFORE_CLOSE`` is set).
    - With no argument the spider waits on Redis for payloads: JSON objects as above, or a
      bare URL string (``redis-cli lpush web:start_urls https://...``).

    Subclasses implement ``make_start_request(url, meta)``. Videos already seen by any process
    on this Redis (``<name>:videos_seen``, a set of URLs, kept like the dupefilter and flushed
    with it by ``SCHEDULER_FLUSH_ON_START``) are not yielded twice: see ``first_sighting``.
    Stats are counted under ``spiders/<name>/...``. The opt-out list (``OPTOUT_PATH``,
    crawler/optout.py) applies to every spider here: listed start URLs are skipped and
    ``emit`` rejects listed videos as ``opted_out: optout_list``.

    Like the scrapy-redis dupefilter (``SCHEDULER_PERSIST``), this memory outlives the run: a
    second run on the same Redis yields only what is new; ``-s SCHEDULER_FLUSH_ON_START=1``
    forgets it and crawls everything again.

    At least once (crawler/queue.py): start payloads and requests are leased, not popped and
    forgotten; a sighting (and the download claim, ``pipelines.claims.SeenIndex``) stays
    pending, with this process as owner, until its item is through the item pipelines and, when
    the hand-off pipeline runs, in the ledger. An item the ledger lacks frees its claims and has
    its request handed back, so a killed process or an outage never leaves a video "seen" but
    never recorded.
    """

    start_arg = "url"  # the -a argument that pushes a start payload

    def __init__(self, *args, **kwargs):
        self.start_value = kwargs.pop(self.start_arg, None)
        self.start_meta: dict[str, Any] = {}
        super().__init__(*args, **kwargs)
        self.spider_idle_start_time = time.time()

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.seen_key = RedisKeys.videos_seen(spider.name)
        spider._setup_leases(crawler)
        spider.optout = OptOutList.from_settings(crawler.settings)
        if crawler.settings.getbool("SCHEDULER_FLUSH_ON_START"):
            spider.sightings.clear()
        if spider.start_value:
            payload = {"url": spider.start_payload_url(spider.start_value), "meta": spider.start_meta}
            spider.server.rpush(spider.redis_key, json.dumps(payload))
            spider.close_when_idle(crawler.settings)
        crawler.signals.connect(spider._active, signal=signals.response_received)
        crawler.signals.connect(spider._active, signal=signals.item_scraped)
        return spider

    def close_when_idle(self, settings) -> None:
        """A spider given its start here ends once idle for SPIDER_IDLE_CLOSE_SECONDS (unless
        MAX_IDLE_TIME_BEFORE_CLOSE says otherwise); one waiting for start URLs never does."""
        if not settings.getint("MAX_IDLE_TIME_BEFORE_CLOSE"):
            self.max_idle_time = settings.getint("SPIDER_IDLE_CLOSE_SECONDS", 3)

    # -- hooks for subclasses ----------------------------------------------------------------
    def start_payload_url(self, value: str) -> str:
        """The ``url`` pushed for ``-a <start_arg>=value``."""
        return value.strip()

    def make_start_request(self, url: str, meta: dict):
        """A Request (or list of them) for one start payload; [] to skip it."""
        raise NotImplementedError

    # -- scrapy-redis --------------------------------------------------------------------------
    def make_request_from_data(self, data):
        text = data.decode(self.redis_encoding, "replace") if isinstance(data, bytes) else str(data)
        text = text.strip()
        meta: dict = {}
        if text.startswith("{"):
            try:
                payload = json.loads(text)
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
                self.count("bad_payload")
                self.logger.error("start payload without a url string: %r", text[:200])
                return []
            url = payload["url"]
            meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
        else:
            url = text
        if not url:
            self.count("bad_payload")
            return []
        if self.optout.match(url):
            self.count("opted_out_starts")
            self.logger.info("start URL on the opt-out list, skipped: %s", url[:200])
            return []
        self.count("start_payloads")
        return self.make_start_request(url, dict(meta))

    def next_requests(self):
        """Requests for a batch of start payloads, each leased until its requests are queued."""
        if self.start_leases is None:  # start URLs kept as a set / sorted set: scrapy-redis' pop
            yield from super().next_requests()
            return
        try:
            taken = self.start_leases.take(self.redis_batch_size)
        except redis.RedisError:
            return  # paused: the outage is logged once by crawler.connection
        for lease_id, data in taken:
            try:
                made = self.make_request_from_data(data)
                made = [made] if isinstance(made, Request) else list(made or [])
            except Exception:  # noqa: BLE001 - one bad payload must not stop the others
                self.logger.exception("start payload failed: %r", data[:200])
                self.count("bad_payload")
                made = []
            yield from made  # each one is in the Redis queue when the engine asks for the next
            try:
                self.start_leases.ack([lease_id])
            except redis.RedisError:
                pass  # handed back on close or when it lapses: its start runs twice, harmlessly

    def spider_idle(self):
        """Pull more starts from Redis; close after ``max_idle_time`` s without any activity.

        Work leased by any process counts as activity (a killed process's leases come back).
        """
        try:
            if self.server is not None and (self.count_size(self.redis_key) > 0 or self._leases_outstanding()):
                self.spider_idle_start_time = time.time()
            self.schedule_next_requests()
        except redis.RedisError:
            raise DontCloseSpider from None  # paused until Redis answers (logged once)
        if self.max_idle_time and time.time() - self.spider_idle_start_time >= self.max_idle_time:
            return
        raise DontCloseSpider

    def _active(self, *args, **kwargs):
        self.spider_idle_start_time = time.time()

    # -- helpers ---------------------------------------------------------------------------
    def count(self, what: str, n: int = 1) -> None:
        self.crawler.stats.inc_value(f"spiders/{self.name}/{what}", n)

    def first_sighting(self, url: str) -> bool:
        """True the first time any process on this Redis sees the video ``url``."""
        return self.first_sightings([url])[0]

    def first_sightings(self, urls: list[str]) -> list[bool]:
        """``first_sighting`` for many URLs in one round trip (claims pending until recorded)."""
        if not urls:
            return []
        try:
            fresh = self.sightings.first(urls)
        except redis.RedisError:  # Redis away past the retry: yield; the claims downstream decide
            fresh = [True] * len(urls)
        self._sighted.update(url for url, new in zip(urls, fresh) if new)
        return fresh

    # -- at least once (crawler/queue.py) ------------------------------------------------------
    def _setup_leases(self, crawler) -> None:
        """Sightings and download claims owned by this process; start payloads leased."""
        from pipelines.claims import SeenIndex  # the download claims, settled here with the item

        s = crawler.settings
        keys = RedisKeys.from_settings(s)
        claim_seconds = s.getfloat("CRAWL_CLAIM_SECONDS", 3600.0)
        self.sightings = Sightings(self.server, self.name, keys, ttl=claim_seconds)
        self.download_claims = SeenIndex(self.server, keys, ttl=claim_seconds)
        self.ledger_key = keys.ledger
        # with the hand-off pipeline in use, an item is through once the ledger has its URL
        pipelines = s.getwithbase("ITEM_PIPELINES")
        self.ledger_required = any(str(getattr(p, "__qualname__", p)).endswith("HandoffPipeline")
                                   for p, order in pipelines.items() if order is not None)  # fmt: skip
        leasing = issubclass(load_object(s.get("SCHEDULER")), LeasingScheduler)
        as_list = not (s.getbool("REDIS_START_URLS_AS_SET") or s.getbool("REDIS_START_URLS_AS_ZSET"))
        self.start_leases = (Leases(self.server, self.redis_key, "list", ttl=s.getfloat("CRAWL_LEASE_SECONDS", 60.0))
                             if leasing and as_list else None)  # fmt: skip
        self._sighted: set[str] = set()
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(self._item_through, signal=signal)

    def _leases_outstanding(self) -> bool:
        queue = (self.settings.get("SCHEDULER_QUEUE_KEY") or "%(spider)s:requests") % {"spider": self.name}
        keys = [RedisKeys.leased(queue)] + ([self.start_leases.zkey] if self.start_leases else [])
        return any(self.server.zcard(key) for key in keys)

    def _item_through(self, item, response=None, failure=None, **kwargs):
        """An item left the pipelines: settle its claims; if the ledger lacks it, hand its request back."""
        if not isinstance(item, VideoItem):
            return
        # "?": the scripts ask the ledger themselves, so the check and both settles are one round trip
        flag = "0" if failure is not None else ("?" if self.ledger_required else "1")
        calls = [self.sightings.settle_call(item.url, flag)] if item.url in self._sighted else []
        calls.append(self.download_claims.settle_call(item, flag))
        try:
            recorded = bool(pipelined(self.server, calls)[-1])
        except redis.RedisError:
            recorded = False  # the claims lapse with this process or their expiry
        self._sighted.discard(item.url)
        if not recorded:
            self.count("items_unrecorded")
            request = getattr(response, "request", None)
            if request is not None:
                request.meta[UNRECORDED_META] = True

    def emit(self, item: VideoItem) -> VideoItem:
        """Reject it if the opt-out list names its URL or page; count it by outcome; return it."""
        if item.download_via != "local" and not item.errors.get("crawl", "").startswith(OPTED_OUT):
            if self.optout.match(item.url) or self.optout.match(item.page_url):
                item.reject("crawl", OPTED_OUT, LISTED)  # the last word, over a refusal or a failure
        self.count("items")
        if item.errors:
            for stage, error in item.errors.items():
                self.count(f"{item.status}/{error.split(':', 1)[0]}")
        return item
