"""The one shape of an item pipeline: skip decided items, never raise on bad media, count outcomes.

A pipeline subclasses :class:`ItemPipeline`, sets ``stage`` and implements
``async process(item) -> str`` returning the outcome code it counts (``"ok"``, ``"local"``...).
Bad media is reported by raising :class:`~crawler.errors.MediaError`: the base class turns
it into ``item.reject`` (deliberate: not a video, too large...) or ``item.fail`` (retryable)
and counts ``pipelines/<stage>/<code>`` in Scrapy's stats. Blocking work runs through
:meth:`ItemPipeline.in_thread`, media work through :meth:`ItemPipeline.in_process` (the
crawl's process pool, every core), each with a timeout, so the reactor never waits on media.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from crawler import locations
from crawler.errors import REJECT_CODES, MediaError  # REJECT_CODES: the deliberate verdicts (rejected)
from crawler.items import VideoItem
from pipelines.pool import MediaPool

logger = logging.getLogger(__name__)


def record_error(item: VideoItem, stage: str, code: str, message: str | None = None) -> None:
    """Reject or fail ``item`` at ``stage`` depending on the code."""
    if code in REJECT_CODES:
        item.reject(stage, code, message)
    else:
        item.fail(stage, code, message)


class ItemPipeline:
    """Base class of the crawl's item pipelines (download, dedup, probe, phash, filters, handoff)."""

    stage: str = "base"

    def __init__(self, crawler):
        self.crawler = crawler
        self.settings = crawler.settings
        self.media_timeout = self.settings.getfloat("MEDIA_TIMEOUT", 60.0)
        if self.media_timeout <= 0:
            raise ValueError(f"MEDIA_TIMEOUT must be a positive number of seconds, got {self.media_timeout}")

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def count(self, code: str) -> None:
        self.crawler.stats.inc_value(f"pipelines/{self.stage}/{code}")

    async def in_thread(self, func, *args, timeout: float | None = None) -> Any:
        """Run blocking ``func(*args)`` in a thread; ``MediaError("timeout")`` past ``timeout``.

        The media functions also stop themselves at their own deadline, so a timed-out thread
        does not keep working for long.
        """
        timeout = timeout or self.media_timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(func, *args), timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise MediaError("timeout", f"{self.stage} ran over {timeout:g}s") from exc

    @staticmethod
    def media_location(item: VideoItem) -> str:
        """Where a media worker reads the item's bytes: the local copy this process holds of its
        object (``crawler.locations.hold``: workers do not share that memory), else its location."""
        local = locations.readable(item.path)
        return str(local) if local is not None else item.path

    async def in_process(self, func, *args, timeout: float | None = None) -> Any:
        """Run media ``func(*args)`` (a module-level function) in the crawl's process pool
        (``pipelines.pool``, ``MEDIA_PROCESSES``); ``MediaError`` as the function raised it,
        ``timeout`` past ``timeout``."""
        pool = MediaPool.of(self.crawler)
        return await pool.call(func, *args, timeout=timeout or self.media_timeout, label=self.stage)

    async def process_item(self, item):
        if not isinstance(item, VideoItem) or item.decided:
            return item
        try:
            code = await self.process(item)
        except MediaError as exc:
            record_error(item, self.stage, exc.code, exc.message or None)
            code = exc.code
            logger.info("%s %s: %s (%s)", self.stage, item.status, code, item.url)
        except Exception as exc:  # a bug or an unexpected library error: record, never raise
            logger.exception("%s failed on %s", self.stage, item.url)
            item.fail(self.stage, "internal_error", f"{type(exc).__name__}: {exc}")
            code = "internal_error"
        self.count(code or "ok")
        return item

    async def process(self, item: VideoItem) -> str:
        raise NotImplementedError
