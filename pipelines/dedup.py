"""Exact dedup stage: sha256 of the bytes is the video id; a second copy is a duplicate.

The first URL of every digest is kept in ``<prefix>:sha256`` (``pipelines.claims.Sha256Index``,
atomic across spider processes). A later item with the same bytes from another URL becomes
``duplicate`` with ``duplicate_of`` = that id and is not enqueued. The same URL seen again (a
resumed crawl) is not its own duplicate. The digest is also written back to the download
stage's ``<prefix>:seen`` claims, so later finds of the URL or platform id name the id.

Here too: the licence is normalised (``item.license_id``, crawler/licenses.py) for every item
that reaches this stage; a byte-identical copy's provenance (URL, page, source, licence) is
recorded under the canonical's id (``crawler.provenance.CopyBook``), so the cluster keeps every
place the video was found; and bytes whose digest a takedown forgot
(``crawler.takedowns.Tombstones``) are rejected as ``opted_out: forgotten`` and their file deleted.
"""

from __future__ import annotations

import logging

from crawler import locations
from crawler.connection import get_redis
from crawler.errors import MediaError
from crawler.items import DUPLICATE, VideoItem
from crawler.keys import RedisKeys
from crawler.licenses import license_id_of
from crawler.provenance import EXACT, CopyBook, provenance
from crawler.takedowns import FORGOTTEN, Tombstones
from pipelines.base import ItemPipeline
from pipelines.claims import SeenIndex, Sha256Index
from pipelines.media import sha256_file

logger = logging.getLogger(__name__)


class DedupPipeline(ItemPipeline):
    """Sets ``sha256`` and ``video_id``; marks byte-identical copies as duplicates."""

    stage = "dedup"

    def __init__(self, crawler, redis_client=None):
        super().__init__(crawler)
        keys = RedisKeys.from_settings(self.settings)
        client = redis_client or get_redis()
        self.digests = Sha256Index(client, keys)
        self.seen = SeenIndex(client, keys)
        self.copies = CopyBook(client, keys)
        self.tombstones = Tombstones(client, keys)

    async def process(self, item: VideoItem) -> str:
        item.license_id = license_id_of(item)
        if not item.path:
            raise MediaError("missing_file", "no path after download")
        try:
            # the download stage hashed the bytes as they streamed to disk: no second read
            digest = item.sha256 or await self.in_process(sha256_file, self.media_location(item))
        except OSError as exc:
            raise MediaError("missing_file", str(exc)) from exc
        item.sha256 = item.video_id = digest
        if self.tombstones.has_video(digest):
            item.reject(self.stage, "opted_out", FORGOTTEN)
            self._drop_file(item)
            return FORGOTTEN
        self.seen.resolve(item, digest)
        outcome = self.digests.claim(digest, item.url)
        if outcome == DUPLICATE:
            item.status = DUPLICATE
            item.duplicate_of = digest
            item.similarity = 1.0
            self.copies.add(digest, [provenance(item, EXACT)])
        return outcome

    @staticmethod
    def _drop_file(item: VideoItem) -> None:
        """Delete the bytes just downloaded of a forgotten video (never a local source file)."""
        if item.download_via == "local" or not item.path:
            return
        try:
            locations.remove(item.path)  # a file, or an object in a bucket store
            item.path = None
        except Exception as exc:  # noqa: BLE001 - OSError, or an object store's error
            logger.warning("could not delete the forgotten video's file %s: %s", item.path, exc)
