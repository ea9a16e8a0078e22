"""Crawl failures back through their spider's queue (``python -m processing retry``).

A video that failed in the crawl (a download timeout, an HTTP 503, a probe error...) has no
document: only its ledger entry (URL, source, stage, page). ``requeue_crawl_failures`` pushes a
start payload for each into ``<spider>:start_urls`` (the spider is the entry's ``source``) and
forgets the URL's "seen" marks (``<spider>:videos_seen``, the download claim in
``<prefix>:seen``) so the spider yields it, and the pipelines fetch it, again. What each
spider is given, so the video comes back with what its source says of it:

- ``web``: the page it was found on (depth 0), else the video URL itself;
- ``archive_org``: the item's details page (its metadata API call); ``commons``: the file's
  ``imageinfo`` API call (from its description page);
- ``ytdlp``, ``local``, ``urls`` and any other spider: the URL (a ``file://`` URI for local files).

The ledger records each as ``new`` until the crawl records it again.
"""

from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import unquote, urlencode, urlsplit

import redis

from crawler.items import FAILED, NEW
from crawler.keys import RedisKeys
from crawler.ledger import Ledger

# The ledger's stages of the crawl (a failure at any other stage is a worker's: `retry` requeues
# its document onto the work stream instead).
CRAWL_STAGES = frozenset({"crawl", "resolve", "download", "fetch", "dedup", "probe", "phash", "filters",
                          "handoff", "takedown"})  # fmt: skip


def _commons_payload(page_url: str) -> dict | None:
    import settings
    from crawler.spiders.commons import EXTMETADATA

    path = unquote(urlsplit(page_url).path)
    if "/wiki/" not in path:
        return None
    title = path.split("/wiki/", 1)[1].replace("_", " ")
    params = {"action": "query", "format": "json", "formatversion": "2", "titles": title, "prop": "imageinfo",
              "iiprop": "url|mime|size|mediatype|extmetadata", "iiurlwidth": "640",
              "iiextmetadatafilter": "|".join(EXTMETADATA)}  # fmt: skip
    return {"url": f"{settings.COMMONS_API_URL}?{urlencode(params)}"}


def start_payload(source: str, url: str, page_url: str | None = None) -> dict[str, Any] | None:
    """The start payload that makes spider ``source`` find ``url`` again, or None when it cannot."""
    if source == "web":
        return {"url": page_url or url, "meta": {"depth": 0}}
    if source == "archive_org":
        return {"url": page_url} if page_url and "/details/" in page_url else None
    if source == "commons":
        return _commons_payload(page_url) if page_url else None
    return {"url": url}


def crawl_failures(ledger: Ledger, stage: str | None = None) -> Iterator[tuple[str, dict]]:
    """``(url, entry)`` of every URL whose last state is a crawl failure (at ``stage`` if given)."""
    for url, entry in ledger.entries(FAILED):
        at = entry.get("stage")
        if at in CRAWL_STAGES and (stage is None or at == stage):
            yield url, entry


def requeue_crawl_failures(client: redis.Redis, keys: RedisKeys, stage: str | None = None) -> dict[str, int]:
    """Push every crawl failure back to its spider; returns counts by spider, and ``not_requeued``
    (failures whose source gives no way back: an archive item with no page recorded...)."""
    ledger = Ledger(client, keys)
    counts: dict[str, int] = {}
    for url, entry in list(crawl_failures(ledger, stage)):
        source = entry.get("source") or ""
        payload = start_payload(source, url, entry.get("page_url")) if source else None
        if payload is None:
            counts["not_requeued"] = counts.get("not_requeued", 0) + 1
            continue
        with client.pipeline() as pipe:
            pipe.srem(RedisKeys.videos_seen(source), url)
            pipe.hdel(RedisKeys.videos_pending(source), url)
            pipe.hdel(keys.seen, f"url:{url}")
            pipe.rpush(RedisKeys.start_urls(source), json.dumps(payload))
            pipe.execute()
        ledger.record(url, NEW, video_id=entry.get("video_id"), stage="retry", source=source,
                      page_url=entry.get("page_url"))  # fmt: skip
        counts[source] = counts.get(source, 0) + 1
    return counts
