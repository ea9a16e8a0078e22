"""MetricsExtension: a spider process's Prometheus endpoint (``METRICS_PORT``), from Scrapy stats and signals.

Enabled by ``METRICS_PORT`` (0 or unset: off, ``NotConfigured``); bound to ``METRICS_HOST``
(default 127.0.0.1; 0.0.0.0 in containers). Series, each labelled with the spider's name:

- ``videopipe_crawl_items_total{status}``: items by their state when the crawl let them go
  (queued, duplicate, rejected, failed; ``new`` without the item pipelines; ``dropped``)
- ``videopipe_crawl_media_bytes_total{via}``: bytes of the media files taken in, by how
  (``files``/``ytdlp`` downloaded, ``local`` read in place)
- ``videopipe_crawl_response_bytes_total``: HTTP bytes received (pages and media; Scrapy stats)
- ``videopipe_crawl_pages_total``: responses received (Scrapy stats)
- ``videopipe_crawl_errors_total{kind}``: ``spider`` (callback exceptions), ``item`` (a
  pipeline raised), ``download`` (download exceptions, Scrapy stats), ``log`` (ERROR lines)

Values are read when Prometheus scrapes, so the endpoint never lags the stats.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from scrapy import signals
from scrapy.exceptions import NotConfigured

from crawler.items import VideoItem

logger = logging.getLogger(__name__)


class MetricsExtension:
    """Serves the spider's counters on ``METRICS_HOST:METRICS_PORT`` while it runs."""

    def __init__(self, crawler, port: int, host: str = "127.0.0.1"):
        self.crawler = crawler
        self.spider_name = "?"
        self.items: dict[str, int] = {}
        self.media_bytes: dict[str, int] = {}
        self.errors = {"spider": 0, "item": 0}
        self.registry = CollectorRegistry()
        self.registry.register(self)
        try:
            self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ValueError(f"METRICS_PORT: cannot serve metrics on {host}:{port}: {exc}") from exc
        self.port = self.server.server_port
        logger.info("metrics on http://%s:%d/metrics", host, self.port)

    @classmethod
    def from_crawler(cls, crawler):
        port = crawler.settings.getint("METRICS_PORT", 0)
        if port <= 0:
            raise NotConfigured("METRICS_PORT is not set")
        ext = cls(crawler, port, crawler.settings.get("METRICS_HOST") or "127.0.0.1")
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(ext.item_dropped, signal=signals.item_dropped)
        crawler.signals.connect(ext.item_error, signal=signals.item_error)
        crawler.signals.connect(ext.spider_error, signal=signals.spider_error)
        return ext

    # -- signals -------------------------------------------------------------------------------
    def spider_opened(self, spider):
        self.spider_name = spider.name

    def spider_closed(self, spider, reason):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def item_scraped(self, item, response=None, spider=None):
        status = getattr(item, "status", None) or "unknown"
        self.items[status] = self.items.get(status, 0) + 1
        if isinstance(item, VideoItem) and item.size_bytes and item.path:
            via = item.download_via or "files"
            self.media_bytes[via] = self.media_bytes.get(via, 0) + int(item.size_bytes)

    def item_dropped(self, item, response=None, exception=None, spider=None):
        self.items["dropped"] = self.items.get("dropped", 0) + 1

    def item_error(self, item, response=None, spider=None, failure=None):
        self.errors["item"] += 1

    def spider_error(self, failure, response=None, spider=None):
        self.errors["spider"] += 1

    # -- the collector ---------------------------------------------------------------------------
    def describe(self):
        return []  # values are read at collect time

    def collect(self):
        stats = self.crawler.stats
        spider = [self.spider_name]
        items = CounterMetricFamily("videopipe_crawl_items", "Items by state when the crawl let them go",
                                    labels=["spider", "status"])  # fmt: skip
        for status, n in sorted(dict(self.items).items()):
            items.add_metric(spider + [status], n)
        yield items
        media = CounterMetricFamily("videopipe_crawl_media_bytes", "Bytes of media files taken in",
                                    labels=["spider", "via"])  # fmt: skip
        for via, n in sorted(dict(self.media_bytes).items()):
            media.add_metric(spider + [via], n)
        yield media
        for name, key, doc in (
            ("videopipe_crawl_response_bytes", "downloader/response_bytes", "HTTP bytes received"),
            ("videopipe_crawl_pages", "response_received_count", "Responses received"),
        ):
            family = CounterMetricFamily(name, doc, labels=["spider"])
            family.add_metric(spider, stats.get_value(key, 0) or 0)
            yield family
        errors = CounterMetricFamily("videopipe_crawl_errors", "Errors by kind", labels=["spider", "kind"])
        counts = dict(self.errors)
        counts["download"] = stats.get_value("downloader/exception_count", 0) or 0
        counts["log"] = stats.get_value("log_count/ERROR", 0) or 0
        for kind, n in sorted(counts.items()):
            errors.add_metric(spider + [kind], n)
        yield errors
