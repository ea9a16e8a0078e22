"""The Redis behaviour every source spider shares: start URLs from Redis, JSON payloads, idle close."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, ScrapyDeprecationWarning
from scrapy_redis.spiders import RedisSpider

from crawler.items import VideoItem
from crawler.keys import RedisKeys

# scrapy-redis 0.9.1 still passes `spider=` to the stats collector; the warning is theirs.
warnings.filterwarnings("ignore", category=ScrapyDeprecationWarning, module=r"scrapy_redis\.")


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
    Stats are counted under ``spiders/<name>/...``.

    Like the scrapy-redis dupefilter (``SCHEDULER_PERSIST``), this memory outlives the run: a
    second run on the same Redis yields only what is new; ``-s SCHEDULER_FLUSH_ON_START=1``
    forgets it and crawls everything again. A process that dies loses the requests it had
    popped (scrapy-redis is at-most-once); the videos it had seen are not yielded again.
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
        if crawler.settings.getbool("SCHEDULER_FLUSH_ON_START"):
            spider.server.delete(spider.seen_key)
        if spider.start_value:
            payload = {"url": spider.start_payload_url(spider.start_value), "meta": spider.start_meta}
            spider.server.rpush(spider.redis_key, json.dumps(payload))
            if not crawler.settings.getint("MAX_IDLE_TIME_BEFORE_CLOSE"):
                spider.max_idle_time = crawler.settings.getint("SPIDER_IDLE_CLOSE_SECONDS", 3)
        crawler.signals.connect(spider._active, signal=signals.response_received)
        crawler.signals.connect(spider._active, signal=signals.item_scraped)
        return spider

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
        self.count("start_payloads")
        return self.make_start_request(url, dict(meta))

    def spider_idle(self):
        """Pull more starts from Redis; close after ``max_idle_time`` s without any activity."""
        if self.server is not None and self.count_size(self.redis_key) > 0:
            self.spider_idle_start_time = time.time()
        self.schedule_next_requests()
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
        return bool(self.server.sadd(self.seen_key, url))

    def emit(self, item: VideoItem) -> VideoItem:
        """Count an item by outcome before it is yielded."""
        self.count("items")
        if item.errors:
            for stage, error in item.errors.items():
                self.count(f"{item.status}/{error.split(':', 1)[0]}")
        return item
