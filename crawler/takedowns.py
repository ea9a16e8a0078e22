"""Takedown tombstones in Redis: what ``python -m processing forget`` removed, so no crawl takes it again.

One hash, ``RedisKeys.forgotten``, with a field per tombstone:

- ``url:<key>``: a URL where a forgotten video was found (its page too), as ``url_key`` writes
  it (no scheme, fragment or default port, host lower-case), or a ``file://`` URI for local files;
- ``id:<video_id>``: a forgotten video's sha256, so its bytes are refused at any URL;
- ``domain:<domain>``: a whole site (and its subdomains).

The crawl checks them twice (``pipelines/takedowns.py`` before a download, by URL, page and
domain; ``pipelines/dedup.py`` after it, by sha256) and rejects a match as
``opted_out: forgotten``. The workers check ids too: a video queued before it was forgotten
is not written back. Tombstones are only ever added: the hash length is their version.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import redis

from crawler.items import utcnow
from crawler.keys import RedisKeys

FORGOTTEN = "forgotten"  # the detail of the reason code: ``opted_out: forgotten``


def _ascii(host: str) -> str:
    host = host.lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def host_of(url: str | None) -> str | None:
    """The lower-case host of an http(s) URL (IDNA), or None."""
    if not url or not url.strip().lower().startswith(("http://", "https://")):
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return _ascii(host) if host else None


def url_key(url: str) -> str | None:
    """An http(s) URL without scheme, fragment and default port (``example.org/a?b``), or None
    (the same form as the opt-out list's, crawler/optout.py)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = host_of(url)
    if not host or parts.scheme.lower() not in ("http", "https"):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port and port != {"http": 80, "https": 443}[parts.scheme.lower()]:
        netloc += f":{port}"
    return netloc + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def domain_key(domain: str) -> str:
    """``Example.org.`` / ``*.example.org`` / ``https://example.org/x`` -> ``example.org``."""
    text = (domain or "").strip()
    host = host_of(text) if "://" in text else None
    name = (host or text).lstrip("*").lstrip(".").rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    if not name or "/" in name or " " in name:
        raise ValueError(f"--domain needs a domain name such as example.org, got {domain!r}")
    return name


def place_key(url: str | None) -> str | None:
    """How a URL or a local path is named in tombstones and copy lists (None for nothing)."""
    if not url:
        return None
    text = url.strip()
    if text.lower().startswith(("http://", "https://")):
        return url_key(text)
    if text.startswith("file:"):
        return text
    if text.startswith("/"):
        return Path(text).as_uri()
    return text


class Tombstones:
    """The takedown tombstones of one key prefix: add them, and ask whether something is forgotten."""

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.key = keys.forgotten

    @staticmethod
    def _entry(video_id: str | None, reason: str | None) -> str:
        return json.dumps({"at": utcnow(), "video_id": video_id, "reason": reason})

    def add(self, *, urls=(), video_ids=(), domains=(), reason: str | None = None,
            video_of: dict[str, str] | None = None) -> int:  # fmt: skip
        """Record tombstones; returns how many are new. ``video_of`` maps a URL to its video id."""
        video_of = video_of or {}
        fields = {}
        for url in urls:
            key = place_key(url)
            if key:
                fields[f"url:{key}"] = self._entry(video_of.get(url), reason)
        for vid in video_ids:
            if vid:
                fields[f"id:{vid}"] = self._entry(vid, reason)
        for domain in domains:
            fields[f"domain:{domain_key(domain)}"] = self._entry(None, reason)
        if not fields:
            return 0
        with self.client.pipeline() as pipe:
            for name, value in fields.items():
                pipe.hsetnx(self.key, name, value)
            return sum(pipe.execute())

    def match_url(self, *urls: str | None) -> str | None:
        """The tombstone (``url:...`` or ``domain:...``) that names one of ``urls``, or None."""
        names = []
        for url in urls:
            key = place_key(url)
            if not key:
                continue
            names.append(f"url:{key}")
            if "?" in key:
                names.append(f"url:{key.split('?', 1)[0]}")
            host = host_of(url)
            if host:
                labels = host.split(".")
                names.extend(f"domain:{'.'.join(labels[i:])}" for i in range(max(1, len(labels) - 1)))
        if not names:
            return None
        found = self.client.hmget(self.key, names)
        return next((n for n, v in zip(names, found) if v is not None), None)

    def has_video(self, video_id: str | None) -> bool:
        return bool(video_id) and bool(self.client.hexists(self.key, f"id:{video_id}"))

    def forgotten_among(self, video_ids) -> set[str]:
        """The ids among ``video_ids`` that were forgotten (one round trip)."""
        ids = [v for v in dict.fromkeys(video_ids) if v]
        if not ids:
            return set()
        found = self.client.hmget(self.key, [f"id:{v}" for v in ids])
        return {v for v, hit in zip(ids, found) if hit is not None}

    def video_ids(self) -> set[str]:
        """Every forgotten video id."""
        out = set()
        for name in self.client.hscan_iter(self.key, match="id:*", count=1000):
            field = name[0].decode() if isinstance(name[0], bytes) else name[0]
            out.add(field[3:])
        return out

    def version(self) -> int:
        """Changes whenever a tombstone is added (they are never removed)."""
        return int(self.client.hlen(self.key))
