"""Network guard: whether a URL may be fetched, and the checked address its connection must use.

Reason codes (stable: items record them, the middleware counts ``netguard/refused/<code>``):

- ``bad_url``            not parseable, no host, control characters, longer than ``MAX_URL_LENGTH``
- ``scheme_not_allowed`` anything but http/https (javascript:, data:, file:, ftp:...)
- ``unresolvable``       the host name does not resolve
- ``private_address``    the host is, or resolves to, an address that is not public and the
                         policy does not allow: loopback, private, link-local, shared (CGNAT),
                         multicast, reserved, unspecified (0.0.0.0, ::), and every IPv6 form that
                         carries an IPv4 address (::ffff:a.b.c.d, ::a.b.c.d, ::ffff:0:a.b.c.d,
                         NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32)
                         unless the IPv4 inside is public (64:ff9b:1::/48 and ::/96 never are)

Resolve once, check every address, connect only to a checked one. ``Guard.check(url)`` answers a
``Verdict`` whose ``addresses`` are the only ones a connection may use; every address a name
resolves to must pass, so a name with one public and one private answer is refused. IPv4
literals are read as a browser and ``inet_aton`` read them (``2130706433``, ``0177.1``,
``0x7f.0.0.1`` are 127.0.0.1), so no spelling slips past.

Answers are kept ``ttl`` seconds (``NETGUARD_DNS_TTL``) in one process-wide table,
``RESOLUTIONS``, that the spiders' check and the Scrapy resolver
(``crawler.middlewares.GuardedResolver``) share: within the TTL a connection goes to exactly
the answer that was checked; after it, the new answer is checked before any connection uses it.
Code that opens its own sockets (yt-dlp, redirect hops) calls ``check_url`` and connects to
``verdict.addresses`` (or uses ``Guard.create_connection``, a drop-in ``socket.create_connection``).

The policy is ``ALLOW_PRIVATE_NETWORKS``: false (public addresses only), true / 1 (any address),
or a comma-separated list of ``host[:port]``, ``CIDR[:port]`` and ``[IPv6 or CIDR]:port``
entries, e.g. ``127.0.0.1:8765`` (only the test site), ``10.0.0.0/8``, ``localhost:8000``.
A name entry allows what that name resolves to. Lookups block: call from a thread.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2083  # the de-facto limit (Scrapy's URLLENGTH_LIMIT default)
DEFAULT_TTL = 60.0  # seconds an answer (or a failure) is reused; NETGUARD_DNS_TTL

BAD_URL = "bad_url"
SCHEME_NOT_ALLOWED = "scheme_not_allowed"
UNRESOLVABLE = "unresolvable"
PRIVATE_ADDRESS = "private_address"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NEVER_PUBLIC = [ipaddress.ip_network(n) for n in (
    "::/96",  # IPv4-compatible (deprecated), :: and ::1 included
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
    "fec0::/10",  # site-local (deprecated)
)]  # fmt: skip
_TRUE = {"1", "true", "yes", "on", "all"}
_FALSE = {"", "0", "false", "no", "off", "none"}
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class Refused(OSError):
    """A connection the guard refuses; ``code`` is the reason code."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"netguard: {code}" + (f": {detail}" if detail else ""))
        self.code = code


# -- addresses ------------------------------------------------------------------------------
def _loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read as inet_aton / the WHATWG URL parser read IPv4 (decimal, octal, hex, 1-4 parts)."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts = parts[:-1]  # one trailing dot
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if re.fullmatch(r"0[xX][0-9a-fA-F]*", part):
                values.append(int(part[2:] or "0", 16))
            elif re.fullmatch(r"0[0-7]+", part):
                values.append(int(part, 8))
            elif re.fullmatch(r"0|[1-9][0-9]*", part):
                values.append(int(part))
            else:
                return None
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for i, v in enumerate(head):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def parse_ip(host: str) -> IPAddress | None:
    """The address a host literal names (IPv6 with or without brackets, any IPv4 spelling)."""
    host = (host or "").strip().strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host:  # IPv6 with a zone id the module does not take ("%25eth0" in URLs)
        try:
            return ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
    return _loose_ipv4(host)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_public(address: str | IPAddress) -> bool:
    """True for an address that any site on the internet may have; False for everything else."""
    ip = address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else parse_ip(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    if ip.is_multicast or ip.is_site_local or any(ip in n for n in _NEVER_PUBLIC):
        return False
    inner = _embedded_ipv4(ip)
    if inner is not None:
        if not _public_v4(inner):
            return False
        if ip.ipv4_mapped or ip in _NAT64:
            return True  # the connection goes to the IPv4 inside (Python flags these non-global)
    return ip.is_global


# -- policy ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    name: str | None
    port: int | None

    def matches(self, ip: IPAddress, port: int, host: str) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return host == self.name
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return ip.version == self.network.version and ip in self.network


def _parse_entry(text: str) -> _Entry:
    bad = ValueError(f"ALLOW_PRIVATE_NETWORKS: {text!r} is not a host[:port] or CIDR[:port] entry")
    s, port = text.strip().lower(), None
    if s.startswith("["):  # [IPv6] or [IPv6/len], then an optional :port
        close = s.find("]")
        if close < 0 or (s[close + 1 :] and not s[close + 1 :].startswith(":")):
            raise bad
        s, port = s[1:close], s[close + 2 :] or None
    elif s.count(":") == 1:  # host:port or IPv4 CIDR:port
        s, port = s.split(":")
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise bad
        port = int(port)
    try:
        return _Entry(ipaddress.ip_network(s, strict=False), None, port)
    except ValueError:
        pass
    loose = None if "/" in s else _loose_ipv4(s)
    if loose is not None:
        return _Entry(ipaddress.ip_network(loose), None, port)
    if not _HOST_NAME.match(s.rstrip(".")):
        raise bad
    return _Entry(None, s.rstrip("."), port)


@dataclass(frozen=True)
class NetPolicy:
    """Which non-public addresses may be reached: none, all, or the listed entries."""

    allow_all: bool = False
    entries: tuple[_Entry, ...] = ()

    @classmethod
    def parse(cls, value) -> NetPolicy:
        """From a setting's value: a bool, 0/1, "true"/"false", or "host[:port],CIDR,..." (or a list)."""
        if isinstance(value, NetPolicy):
            return value
        if value is None or isinstance(value, (bool, int)):
            return cls(allow_all=bool(value))
        if isinstance(value, (list, tuple, set, frozenset)):
            value = ",".join(str(v) for v in value)
        return _parse_policy(str(value))

    @classmethod
    def from_settings(cls, settings) -> NetPolicy:
        return cls.parse(settings.get("ALLOW_PRIVATE_NETWORKS"))

    def allows(self, ip: IPAddress, port: int, host: str = "") -> bool:
        if is_public(ip) or self.allow_all:
            return True
        return any(e.matches(ip, port, host) for e in self.entries)


@functools.lru_cache(maxsize=64)
def _parse_policy(text: str) -> NetPolicy:
    word = text.strip().lower()
    if word in _TRUE:
        return NetPolicy(allow_all=True)
    if word in _FALSE:
        return NetPolicy()
    return NetPolicy(entries=tuple(_parse_entry(e) for e in text.split(",") if e.strip()))


# -- resolution -----------------------------------------------------------------------------
def system_resolve(host: str) -> list[str] | None:
    """Every address ``host`` resolves to (the system resolver's order), or None."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return None
    return list(dict.fromkeys(info[4][0] for info in infos)) or None


_MISS = object()


class Resolutions:
    """Host -> addresses answers, each reused ``ttl`` seconds (failures too); thread-safe."""

    def __init__(self, resolve: Callable[[str], Iterable[str] | None] = system_resolve,
                 ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 10_000):  # fmt: skip
        if ttl < 0:
            raise ValueError(f"NETGUARD_DNS_TTL must be >= 0 seconds, got {ttl!r}")
        self.resolve, self.ttl, self.clock, self.max_entries = resolve, ttl, clock, max_entries
        self._answers: dict[str, tuple[float, tuple[str, ...] | None]] = {}
        self._lock = threading.Lock()

    def cached(self, host: str):
        """The fresh answer for ``host`` (a tuple, or None: unresolvable), or ``_MISS``."""
        with self._lock:
            hit = self._answers.get(host)
        if hit is None or self.clock() >= hit[0]:
            return _MISS
        return hit[1]

    def lookup(self, host: str) -> tuple[str, ...] | None:
        hit = self.cached(host)
        if hit is not _MISS:
            return hit
        answer = self.resolve(host)
        answer = tuple(answer) if answer else None
        with self._lock:
            if len(self._answers) >= self.max_entries:
                now = self.clock()
                self._answers = {h: a for h, a in self._answers.items() if a[0] > now}
                if len(self._answers) >= self.max_entries:
                    self._answers.clear()
            self._answers[host] = (self.clock() + self.ttl, answer)
        return answer


RESOLUTIONS = Resolutions()  # the process-wide table the checks and the Scrapy resolver share


# -- the guard ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """A check's answer: ``reason`` (None: allowed) and the checked ``addresses`` to connect to."""

    reason: str | None
    host: str
    port: int
    addresses: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def address(self) -> str | None:
        """The pinned address: the first checked one."""
        return self.addresses[0] if self.addresses else None


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


class Guard:
    """Checks hosts and URLs under one policy, with one table of answers (shared by default)."""

    def __init__(self, policy=False, resolutions: Resolutions | None = None):
        self.policy = NetPolicy.parse(policy)
        self.dns = resolutions if resolutions is not None else RESOLUTIONS

    def check_host(self, host: str, port: int, resolve: bool = True) -> Verdict | None:
        """The verdict for a connection to ``host:port``; None if it needs a lookup and not ``resolve``."""
        host = (host or "").strip().strip("[]").lower().rstrip(".")
        ip = parse_ip(host)
        if ip is not None:
            addresses: tuple[str, ...] | None = (str(ip),)
        else:
            addresses = self.dns.lookup(host) if resolve else self.dns.cached(host)
            if addresses is _MISS:
                return None
            if not addresses:
                return Verdict(UNRESOLVABLE, host, port)
        for address in addresses:
            parsed = parse_ip(address)
            if parsed is None or not self.policy.allows(parsed, port, host):
                return Verdict(PRIVATE_ADDRESS, host, port)
        return Verdict(None, host, port, tuple(addresses))

    def check(self, url: str, resolve: bool = True) -> Verdict | None:
        """The verdict for fetching ``url``; None if it needs a lookup and not ``resolve``."""
        reason = scheme_refusal(url)
        if reason:
            return Verdict(reason, "", 0)
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
        return self.check_host(parts.hostname or "", port, resolve)

    def create_connection(self, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
        """``socket.create_connection`` that connects only to checked addresses (raises ``Refused``)."""
        host, port = address[0], int(address[1])
        verdict = self.check_host(host, port)
        if not verdict.ok:
            raise Refused(verdict.reason, f"{host}:{port}")
        error: OSError | None = None
        for ip in verdict.addresses:
            sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect((ip, port))
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"no address for {host}")


def check_url(url: str, policy=False, guard: Guard | None = None) -> Verdict:
    """The allowed verdict for ``url`` (connect to ``.addresses`` / ``.address``); raises ``Refused``."""
    verdict = (guard or Guard(policy)).check(url)
    if not verdict.ok:
        raise Refused(verdict.reason, url[:200])
    return verdict


def refusal(url: str, allow_private=False) -> str | None:
    """Why ``url`` must not be fetched, as a reason code; None when it may be.

    ``allow_private`` is the ``ALLOW_PRIVATE_NETWORKS`` value (bool, "1", a list, a NetPolicy).
    """
    return Guard(allow_private).check(url).reason
