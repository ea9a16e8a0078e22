"""A Scrapy extension for the crawl benchmark: first/last response times and counts per process.

Enabled only by the benchmark (``-s EXTENSIONS='{"bench.crawlprobe.CrawlProbe": 100}'``);
writes ``{"responses", "items", "first", "last", "last_item", "pid"}`` as JSON to ``BENCH_PROBE_FILE``
when the spider closes, so pages/s is measured from the first to the last response,
without process start-up or the idle wait before closing.
"""

from __future__ import annotations

import json
import os
import time

from scrapy import signals
from scrapy.exceptions import NotConfigured


class CrawlProbe:
    """Counts responses and items and remembers when the first and last response came."""

    def __init__(self, path: str):
        self.path = path
        self.responses = 0
        self.items = 0
        self.first: float | None = None
        self.last: float | None = None
        self.last_item: float | None = None

    @classmethod
    def from_crawler(cls, crawler):
        path = crawler.settings.get("BENCH_PROBE_FILE")
        if not path:
            raise NotConfigured("BENCH_PROBE_FILE is not set")
        probe = cls(path)
        crawler.signals.connect(probe.response_received, signal=signals.response_received)
        crawler.signals.connect(probe.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(probe.spider_closed, signal=signals.spider_closed)
        return probe

    def response_received(self, response, request, spider):
        now = time.time()
        if request.url.endswith("/robots.txt"):
            return
        self.responses += 1
        self.first = self.first or now
        self.last = now

    def item_scraped(self, item, response, spider):
        self.items += 1
        self.last_item = time.time()

    def spider_closed(self, spider, reason):
        data = {"responses": self.responses, "items": self.items, "first": self.first,
                "last": self.last, "last_item": self.last_item, "pid": os.getpid(), "reason": reason}  # fmt: skip
        with open(self.path, "w") as fh:
            json.dump(data, fh)
