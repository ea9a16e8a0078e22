"""Hand-off stage: undecided items go to the workers' Redis stream; every item's state is recorded.

Queued items are XADDed to the workers' stream (``RedisKeys(KEY_PREFIX).stream``, the prefix
taken from the crawl's own settings, so ``-s KEY_PREFIX=x`` moves it with the other keys) as
``{"item": item.to_json()}`` (approximate ``MAXLEN ~ STREAM_MAXLEN``) and marked ``queued``. A
byte-identical copy at another place goes there too, still ``duplicate``: the workers add its
provenance to the canonical's document (crawler/provenance.py). Every item, queued, duplicate, rejected or
failed, is recorded in the ledger (``crawler.ledger.Ledger``) and stays in the crawl's feed
with its status: nothing is dropped. A URL found again (a duplicate of itself) does not
overwrite its URL's first ledger state.
"""

from __future__ import annotations

import logging

import redis

from crawler.connection import get_redis
from crawler.items import DUPLICATE, QUEUED, VideoItem
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from crawler.provenance import is_exact_copy

logger = logging.getLogger(__name__)


class HandoffPipeline:
    """Enqueues new videos for the workers and records every item's final crawl state."""

    stage = "handoff"

    def __init__(self, crawler, redis_client=None):
        self.crawler = crawler
        s = crawler.settings
        keys = RedisKeys.from_settings(s)
        self.stream = keys.stream
        self.maxlen = s.getint("STREAM_MAXLEN", 1_000_000)
        if self.maxlen <= 0:
            raise ValueError(f"STREAM_MAXLEN must be a positive integer, got {self.maxlen}")
        self.client = redis_client or get_redis()
        self.ledger = Ledger(self.client, keys)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def count(self, code: str) -> None:
        self.crawler.stats.inc_value(f"pipelines/{self.stage}/{code}")

    async def process_item(self, item):
        if not isinstance(item, VideoItem):
            return item
        if not item.decided:
            item.status = QUEUED
            try:
                self.client.xadd(self.stream, {"item": item.to_json()}, maxlen=self.maxlen,
                                 approximate=True)  # fmt: skip
            except redis.RedisError as exc:
                item.fail(self.stage, "redis_error", str(exc))
                self.count("redis_error")
        elif is_exact_copy(item):
            try:  # its provenance, for the canonical's document (the workers write nothing else)
                self.client.xadd(self.stream, {"item": item.to_json()}, maxlen=self.maxlen, approximate=True)
            except redis.RedisError as exc:  # the copy is in the CopyBook already; the next write merges it
                logger.warning("copy entry not queued for %s: %s", item.url, exc)
        try:
            if item.status == DUPLICATE and self.ledger.get(item.url) is not None:
                # the same URL found again: its ledger entry keeps its first (real) state
                self.count("duplicate_url_kept")
            else:
                self.ledger.record_item(item)
        except redis.RedisError as exc:  # the feed still has it; the log says why
            logger.error("ledger write failed for %s: %s", item.url, exc)
            self.count("ledger_error")
        self.count(item.status)
        return item
