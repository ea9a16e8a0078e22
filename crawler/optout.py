"""The opt-out list (``OPTOUT_PATH``): URLs and domains that no spider crawls, and its downloader middleware.

The file has one entry a line; ``#`` starts a comment (a whole line or the rest of one):

- a domain (``example.org``, ``*.example.org`` or ``.example.org``): that host and every
  subdomain of it;
- a URL (``https://example.org/user/bob/`` or ``example.org/clip.mp4``): that URL, with any
  scheme and query; one that ends in ``/`` also covers everything under it.

Two places apply it, so every spider honours it: ``RedisBaseSpider.emit`` rejects a video whose
URL or page is listed (``errors["crawl"] = "opted_out: optout_list"``, like the robots
opt-out, so the ledger records it) and skips listed start URLs; ``OptOutMiddleware`` refuses
every request to a listed URL (pages, feeds, API calls, redirects), counted as
``optout/refused``. Local files are not URLs of anyone's site and are never matched.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from scrapy.exceptions import IgnoreRequest

logger = logging.getLogger(__name__)

OPTED_OUT = "opted_out"  # the reason code (as for robots directives)
LISTED = "optout_list"  # its detail: on the OPTOUT_PATH list
HOST = re.compile(r"^[a-z0-9_.:-]+$")  # a host name or IP address, IDNA-encoded


def _ascii_host(host: str) -> str:
    """Lower-case, no trailing dot, IDNA (``bücher.example`` -> ``xn--bcher-kva.example``)."""
    host = host.lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _split(url: str) -> tuple[str, str] | None:
    """(host, key) of an http(s) URL: the key is the URL without its scheme, fragment and
    default port (``example.org/a?b``); None for anything else."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        host = _ascii_host(parts.hostname or "")
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not HOST.match(host):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port and port != {"http": 80, "https": 443}[parts.scheme.lower()]:
        netloc += f":{port}"
    return host, netloc + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def url_key(url: str) -> str | None:
    """A URL without its scheme, fragment and default port (``example.org/a?b``), or None."""
    split = _split(url)
    return split[1] if split else None


class OptOutList:
    """Domains and URLs read from a file; ``match(url)`` says whether a URL is on it."""

    def __init__(self, domains=(), urls=(), prefixes=()):
        self.domains = frozenset(domains)
        self.urls = frozenset(urls)
        self.prefixes = frozenset(prefixes)

    def __bool__(self) -> bool:
        return bool(self.domains or self.urls or self.prefixes)

    def __len__(self) -> int:
        return len(self.domains) + len(self.urls) + len(self.prefixes)

    @classmethod
    def parse(cls, text: str) -> OptOutList:
        domains, urls, prefixes = set(), set(), set()
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if "/" not in line:  # a domain
                domain = _ascii_host(line.lstrip("*").lstrip("."))
                if HOST.match(domain):
                    domains.add(domain)
                else:
                    logger.warning("opt-out list line %d is not a domain: %r", n, raw[:200])
                continue
            key = url_key(line)
            if key is None:
                logger.warning("opt-out list line %d is neither a domain nor an http(s) URL: %r", n, raw[:200])
            elif key.endswith("/"):
                prefixes.add(key)
            else:
                urls.add(key)
        return cls(domains, urls, prefixes)

    @classmethod
    def load(cls, path: str | Path | None) -> OptOutList:
        """The list in ``path``; an empty list for no path. A missing file raises ValueError."""
        if not path:
            return cls()
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ValueError(f"OPTOUT_PATH {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        return cls.parse(text)

    @classmethod
    def from_settings(cls, settings) -> OptOutList:
        return cls.load(settings.get("OPTOUT_PATH"))

    def match(self, url: str | None) -> bool:
        """True when ``url`` (http/https) is listed, by its domain or as a URL."""
        if not self or not url:
            return False
        split = _split(url) if url.lower().startswith(("http://", "https://")) else None
        if split is None:
            return False
        host, key = split
        if self.domains:
            labels = host.split(".")
            if any(".".join(labels[i:]) in self.domains for i in range(len(labels))):
                return True
        if key in self.urls or key.split("?", 1)[0] in self.urls:
            return True
        if self.prefixes:
            slash = key.find("/")
            while slash != -1:
                if key[: slash + 1] in self.prefixes:
                    return True
                slash = key.find("/", slash + 1)
        return False


class OptOutMiddleware:
    """Refuses requests to URLs on the opt-out list: ``IgnoreRequest("optout: opted_out")``."""

    def __init__(self, stats, optout: OptOutList):
        self.stats = stats
        self.optout = optout

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats, OptOutList.from_settings(crawler.settings))

    def process_request(self, request, spider=None):
        if self.optout and self.optout.match(request.url):
            self.stats.inc_value("optout/refused")
            logger.info("opt-out list refused %s", request.url[:200])
            raise IgnoreRequest(f"optout: {OPTED_OUT}")
        return None
