"""Hand-off stage: undecided items go to the workers' Redis stream; every item's state is recorded.

Queued items are XADDed to the workers' stream (``RedisKeys(KEY_PREFIX).stream``, the prefix
taken from the crawl's own settings, so ``-s KEY_PREFIX=x`` moves it with the other keys) as
``{"item": item.to_json()}`` (approximate ``MAXLEN ~ STREAM_MAXLEN``) and marked ``queued``. A
byte-identical copy at another place goes there too, still ``duplicate``: the workers add its
provenance to the canonical's document (crawler/provenance.py). Every item, queued, duplicate, rejected or
failed, is recorded in the ledger (``crawler.ledger.Ledger``) and stays in the crawl's feed
with its status: nothing is dropped. A URL found again (a duplicate of itself) does not
overwrite its URL's first ledger state. The stream entry and the ledger state are written by
one Lua script (``Ledger.hand_off``): one round trip per item, and a failed XADD records
nothing but the item's failure.
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
        entry = None
        if not item.decided:
            item.status = QUEUED
            entry = item.to_json()
        elif is_exact_copy(item):  # its provenance, for the canonical's document (the workers write nothing else)
            entry = item.to_json()
        try:  # the stream entry and the ledger state in one script: one round trip
            self._hand_off(item, entry)
        except redis.RedisError as exc:  # nothing was written
            if entry is not None and item.status == QUEUED:
                item.fail(self.stage, "redis_error", str(exc))
                self.count("redis_error")
            elif entry is not None:  # the copy is in the CopyBook already; the next write merges it
                logger.warning("copy entry not queued for %s: %s", item.url, exc)
            try:
                self._hand_off(item, None)
            except redis.RedisError as exc2:  # the feed still has it; the log says why
                logger.error("ledger write failed for %s: %s", item.url, exc2)
                self.count("ledger_error")
        self.count(item.status)
        return item

    def _hand_off(self, item: VideoItem, entry: str | None) -> None:
        # the same URL found again (a duplicate of itself): its entry keeps its first (real) state
        if not self.ledger.hand_off(item, self.stream, self.maxlen, entry, keep_existing=item.status == DUPLICATE):
            self.count("duplicate_url_kept")
