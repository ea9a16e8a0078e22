"""Downloader middleware that applies crawler.netguard to every request and counts refusals."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from urllib.parse import urlsplit

from scrapy.exceptions import IgnoreRequest

from crawler.netguard import refusal, scheme_refusal

logger = logging.getLogger(__name__)


class NetguardMiddleware:
    """Refuses requests that ``crawler.netguard.refusal`` refuses (pages and media alike).

    ``data:`` requests pass: they touch no network (the local and ytdlp spiders use them as
    work tokens). Host verdicts are cached per host name (the DNS lookup runs in a thread).
    Refusals raise ``IgnoreRequest`` and are counted as ``netguard/refused/<reason>``.
    """

    CACHE_SIZE = 4096

    def __init__(self, stats, allow_private: bool):
        self.stats = stats
        self.allow_private = allow_private
        self._verdicts: OrderedDict[tuple[str, str], str | None] = OrderedDict()

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats, crawler.settings.getbool("ALLOW_PRIVATE_NETWORKS"))

    async def _verdict(self, url: str) -> str | None:
        reason = scheme_refusal(url)
        if reason:
            return reason
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key in self._verdicts:
            self._verdicts.move_to_end(key)
            return self._verdicts[key]
        verdict = await asyncio.to_thread(refusal, f"{parts.scheme}://{parts.netloc}/", self.allow_private)
        self._verdicts[key] = verdict
        if len(self._verdicts) > self.CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return verdict

    async def process_request(self, request, spider=None):
        if request.url.startswith("data:"):
            return None
        reason = await self._verdict(request.url)
        if reason is None:
            return None
        self.stats.inc_value("netguard/refused")
        self.stats.inc_value(f"netguard/refused/{reason}")
        logger.info("netguard refused %s: %s", request.url[:200], reason)
        raise IgnoreRequest(f"netguard: {reason}")
