"""Perceptual-hash stage: 64-bit keyframe-collage pHash (16 hex chars) in ``item.phash``.

See ``pipelines.media.phash`` for the algorithm; compare hashes with
``pipelines.media.hamming`` against ``PHASH_MAX_DISTANCE``.
"""

from __future__ import annotations

from crawler.errors import MediaError
from crawler.items import VideoItem
from pipelines.base import ItemPipeline
from pipelines.media import phash


class PhashPipeline(ItemPipeline):
    """Sets ``item.phash``; a file that cannot be hashed fails at this stage."""

    stage = "phash"

    async def process(self, item: VideoItem) -> str:
        if not item.path:
            raise MediaError("missing_file", "no path after download")
        item.phash = await self.in_process(phash, self.media_location(item), self.media_timeout)
        return "ok"
