"""Network guard: decide whether a URL may be fetched (scheme, length, host address class).

``refusal(url, allow_private)`` returns a stable reason code or ``None``:

- ``bad_url``            not parseable, no host, control characters, longer than ``MAX_URL_LENGTH``
- ``scheme_not_allowed`` anything but http/https (javascript:, data:, file:, ftp:...)
- ``unresolvable``       the host name does not resolve
- ``private_address``    the host is, or resolves to, a loopback / private / link-local /
                         reserved / multicast / unspecified address (SSRF guard), unless
                         ``allow_private`` (``settings.ALLOW_PRIVATE_NETWORKS``)

Every address a name resolves to must be public, so a name that resolves to one public and
one private address is refused. The check resolves names with the system resolver, so it
blocks: call it from a thread (the middleware does).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2083  # the de-facto limit (Scrapy's URLLENGTH_LIMIT default)

DNS_CACHE_SECONDS = 60.0  # answers (and failures) are reused this long
_dns_cache: dict[str, tuple[float, list[str] | None]] = {}

BAD_URL = "bad_url"
SCHEME_NOT_ALLOWED = "scheme_not_allowed"
UNRESOLVABLE = "unresolvable"
PRIVATE_ADDRESS = "private_address"


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _addresses(host: str) -> list[str] | None:
    """Every address ``host`` resolves to, or None when it does not resolve."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    now = time.monotonic()
    cached = _dns_cache.get(host)
    if cached and now - cached[0] < DNS_CACHE_SECONDS:
        return cached[1]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        addresses = sorted({info[4][0] for info in infos}) or None
    except (socket.gaierror, UnicodeError, OSError):
        addresses = None
    if len(_dns_cache) > 10_000:
        _dns_cache.clear()
    _dns_cache[host] = (now, addresses)
    return addresses


def scheme_refusal(url: str, schemes: tuple[str, ...] = ALLOWED_SCHEMES) -> str | None:
    """The checks that need no DNS: URL shape, length and scheme."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return BAD_URL
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return BAD_URL
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return BAD_URL
    if parts.scheme.lower() not in schemes:
        return SCHEME_NOT_ALLOWED
    if not host:
        return BAD_URL
    return None


def refusal(url: str, allow_private: bool) -> str | None:
    """Why ``url`` must not be fetched, as a reason code; None when it may be."""
    reason = scheme_refusal(url)
    if reason:
        return reason
    host = urlsplit(url.strip()).hostname or ""
    addresses = _addresses(host)
    if addresses is None:
        return UNRESOLVABLE
    if not allow_private and not all(_is_public(a) for a in addresses):
        return PRIVATE_ADDRESS
    return None
