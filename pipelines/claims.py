"""The Redis claims that make downloads and exact dedup hold across spider processes.

``SeenIndex`` (``<prefix>:seen``): the URL and platform id of every video claimed for
download (HSETNX), later pointed at its video id. ``Sha256Index`` (``<prefix>:sha256``): the
first URL whose bytes had each digest. Both are shared by every spider process on one Redis.
"""

from __future__ import annotations

import redis

from crawler.items import VideoItem
from crawler.keys import RedisKeys


class SeenIndex:
    """URLs and platform ids claimed by any spider process: ``<prefix>:seen`` in Redis."""

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.key = keys.seen

    @staticmethod
    def fields(item: VideoItem) -> list[str]:
        """The hash fields that name ``item``: ``url:<url>`` and, when known, ``pid:<platform id>``."""
        fields = [f"url:{item.url}"]
        if item.platform_id:
            fields.append(f"pid:{item.platform_id}")
        return fields

    def claim(self, item: VideoItem) -> tuple[bool, str | None]:
        """Claim the item's fields; ``(False, video_id or None)`` when one was claimed before."""
        fields = self.fields(item)
        with self.client.pipeline() as pipe:
            for name in fields:
                pipe.hsetnx(self.key, name, "")
            won = pipe.execute()
        if all(won):
            return True, None
        # release what we took just now, keep the earlier claims
        for name, got in zip(fields, won):
            if got:
                self.client.hdel(self.key, name)
        previous = [self.client.hget(self.key, n) for n, got in zip(fields, won) if not got]
        video_id = next((v.decode() for v in previous if v), None)
        return False, video_id

    def release(self, item: VideoItem) -> None:
        """Give the claim up (a failed download), so that a retry may try again."""
        self.client.hdel(self.key, *self.fields(item))

    def resolve(self, item: VideoItem, video_id: str) -> None:
        """Point the item's claims at its video id, so later finds name it."""
        self.client.hset(self.key, mapping={name: video_id for name in self.fields(item)})


class Sha256Index:
    """The first URL of every sha256 digest: ``<prefix>:sha256`` in Redis."""

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.key = keys.sha256

    def claim(self, digest: str, url: str) -> str:
        """``"new"`` for the first URL of ``digest`` (atomic), ``"same_url"`` when ``url`` is
        that URL again (a resumed crawl), else ``"duplicate"``."""
        if self.client.hsetnx(self.key, digest, url):
            return "new"
        first = self.client.hget(self.key, digest)
        if first is not None and first.decode() == url:
            return "same_url"
        return "duplicate"
