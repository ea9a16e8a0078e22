"""Perceptual-hash stage: 64-bit keyframe-collage pHash (16 hex chars) in ``item.phash``.

See ``pipelines.media.phash`` for the algorithm; compare hashes with
``pipelines.media.hamming`` against ``PHASH_MAX_DISTANCE``. The probe stage usually computed it
already on the same open file (``probe_and_phash``); this stage hashes the files it could not
and records why.
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
        if item.phash:  # computed by the probe stage on the same open file
            return "ok"
        if not item.path:
            raise MediaError("missing_file", "no path after download")
        item.phash = await self.in_process(phash, self.media_location(item), self.media_timeout)
        return "ok"
