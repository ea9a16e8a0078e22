"""Takedown stage, before any download: a video whose URL, page or site was forgotten is rejected.

``python -m processing forget`` leaves tombstones (crawler/takedowns.py). This stage refuses
an item whose URL or page URL (or their domain) has one, as ``opted_out: forgotten``, before
a byte is fetched; the dedup stage refuses the same bytes found at a new URL (by sha256).
"""

from __future__ import annotations

from crawler.connection import get_redis
from crawler.items import VideoItem
from crawler.keys import RedisKeys
from crawler.takedowns import FORGOTTEN, Tombstones
from pipelines.base import ItemPipeline


class TakedownPipeline(ItemPipeline):
    """Rejects items a takedown named (by URL, page URL or domain)."""

    stage = "takedown"

    def __init__(self, crawler, redis_client=None):
        super().__init__(crawler)
        self.tombstones = Tombstones(redis_client or get_redis(), RedisKeys.from_settings(self.settings))

    async def process(self, item: VideoItem) -> str:
        if self.tombstones.match_url(item.url, item.page_url):
            item.reject(self.stage, "opted_out", FORGOTTEN)
            return FORGOTTEN
        return "ok"
