"""Exact dedup stage: sha256 of the bytes is the video id; a second copy is a duplicate.

The first URL of every digest is kept in ``<prefix>:sha256`` (``pipelines.claims.Sha256Index``,
atomic across spider processes). A later item with the same bytes from another URL becomes
``duplicate`` with ``duplicate_of`` = that id and is not enqueued. The same URL seen again (a
resumed crawl) is not its own duplicate. The digest is also written back to the download
stage's ``<prefix>:seen`` claims, so later finds of the URL or platform id name the id.
"""

from __future__ import annotations

from crawler.connection import get_redis
from crawler.errors import MediaError
from crawler.items import DUPLICATE, VideoItem
from crawler.keys import RedisKeys
from pipelines.base import ItemPipeline
from pipelines.claims import SeenIndex, Sha256Index
from pipelines.media import sha256_file


class DedupPipeline(ItemPipeline):
    """Sets ``sha256`` and ``video_id``; marks byte-identical copies as duplicates."""

    stage = "dedup"

    def __init__(self, crawler, redis_client=None):
        super().__init__(crawler)
        keys = RedisKeys.from_settings(self.settings)
        client = redis_client or get_redis()
        self.digests = Sha256Index(client, keys)
        self.seen = SeenIndex(client, keys)

    async def process(self, item: VideoItem) -> str:
        if not item.path:
            raise MediaError("missing_file", "no path after download")
        try:
            digest = await self.in_thread(sha256_file, item.path)
        except OSError as exc:
            raise MediaError("missing_file", str(exc)) from exc
        item.sha256 = item.video_id = digest
        self.seen.resolve(item, digest)
        outcome = self.digests.claim(digest, item.url)
        if outcome == DUPLICATE:
            item.status = DUPLICATE
            item.duplicate_of = digest
            item.similarity = 1.0
        return outcome
