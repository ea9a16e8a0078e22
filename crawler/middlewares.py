"""crawler.netguard in Scrapy: a downloader middleware that refuses and counts, and the resolver that pins.

Two parts, both on by default (settings ``DOWNLOADER_MIDDLEWARES`` and ``TWISTED_DNS_RESOLVER``):

- ``NetguardMiddleware`` refuses a request before it is sent (``IgnoreRequest("netguard:
  <reason>")``, counted as ``netguard/refused/<reason>``), so the reason reaches the item.
- ``GuardedResolver`` is the reactor's name resolver: every connection Scrapy opens (pages,
  robots.txt, media, IP literals too) gets only addresses that the guard checked, from the
  same table of answers the middleware filled. A name that answered a public address to the
  check and a private one later (DNS rebinding) cannot reach the private one: the resolver
  re-checks every answer it hands out, and a refused one fails the connection as a DNS error.

Why a resolver and not a download handler that rewrites URLs to IPs: the resolver sits under
every Twisted connection (HTTP/1.1, HTTP/2, proxies, retries, redirects), keeps the Host header,
TLS SNI and certificate checks on the name, and needs no copy of Scrapy's handler code. It is
installed per process (``scrapy crawl``); download handlers that bypass Twisted (httpx, aiohttp)
are not pinned, which the middleware says once in the log.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from scrapy.exceptions import IgnoreRequest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from crawler import netguard
from crawler.netguard import Guard, Verdict

logger = logging.getLogger(__name__)


def configure(settings) -> None:
    """Apply ``NETGUARD_DNS_TTL`` to the process-wide table of answers."""
    ttl = settings.getfloat("NETGUARD_DNS_TTL", netguard.DEFAULT_TTL)
    if ttl < 0:
        raise ValueError(f"NETGUARD_DNS_TTL must be >= 0 seconds, got {ttl!r}")
    netguard.RESOLUTIONS.ttl = ttl


class NetguardMiddleware:
    """Refuses requests that ``crawler.netguard`` refuses (pages and media alike).

    ``data:`` requests pass: they touch no network (the local and ytdlp spiders use them as
    work tokens). Answers are reused for ``NETGUARD_DNS_TTL`` seconds; a lookup runs in a thread.
    """

    def __init__(self, stats, allow_private=False, guard: Guard | None = None):
        self.stats = stats
        self.guard = guard or Guard(allow_private)
        self._pin_checked = False

    @classmethod
    def from_crawler(cls, crawler):
        configure(crawler.settings)
        return cls(crawler.stats, crawler.settings.get("ALLOW_PRIVATE_NETWORKS"))

    async def _verdict(self, url: str) -> Verdict:
        verdict = self.guard.check(url, resolve=False)
        if verdict is None:
            verdict = await asyncio.to_thread(self.guard.check, url)
        return verdict

    def _check_pinned(self) -> None:
        self._pin_checked = True
        reactor = sys.modules.get("twisted.internet.reactor")  # never install one from here
        if reactor is not None and not isinstance(getattr(reactor, "nameResolver", None), GuardedResolver):
            logger.warning("netguard: connections are not pinned to checked addresses "
                           "(TWISTED_DNS_RESOLVER is not crawler.middlewares.GuardedResolver)")  # fmt: skip

    async def process_request(self, request, spider=None):
        if request.url.startswith("data:"):
            return None
        if not self._pin_checked:
            self._check_pinned()
        reason = (await self._verdict(request.url)).reason
        if reason is None:
            return None
        self.stats.inc_value("netguard/refused")
        self.stats.inc_value(f"netguard/refused/{reason}")
        logger.info("netguard refused %s: %s", request.url[:200], reason)
        raise IgnoreRequest(f"netguard: {reason}")


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str):
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class GuardedResolver:
    """``TWISTED_DNS_RESOLVER``: hands each connection only the addresses the guard allowed."""

    def __init__(self, reactor, guard: Guard, timeout: float = 60.0):
        self.reactor = reactor
        self.guard = guard
        self.timeout = timeout

    @classmethod
    def from_crawler(cls, crawler, reactor):
        configure(crawler.settings)
        policy = netguard.NetPolicy.from_settings(crawler.settings)
        return cls(reactor, Guard(policy), crawler.settings.getfloat("DNS_TIMEOUT", 60.0))

    def install_on_reactor(self) -> None:
        self.reactor.installNameResolver(self)

    def resolveHostName(self, resolutionReceiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):  # fmt: skip
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        verdict = self.guard.check_host(hostName, portNumber, resolve=False)
        if verdict is not None:
            self._deliver(resolutionReceiver, verdict, addressTypes)
            return resolution
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                              self.guard.check_host, hostName, portNumber)  # fmt: skip
        d.addTimeout(self.timeout, self.reactor)
        d.addCallbacks(lambda v: self._deliver(resolutionReceiver, v, addressTypes),
                       lambda failure: self._failed(resolutionReceiver, hostName, failure))  # fmt: skip
        return resolution

    @staticmethod
    def _deliver(receiver, verdict: Verdict, address_types) -> None:
        if not verdict.ok:
            logger.warning("netguard refused a connection to %s:%s (%s)", verdict.host, verdict.port, verdict.reason)
        for ip in verdict.addresses:
            kind = IPv6Address if ":" in ip else IPv4Address
            if address_types is None or kind in address_types:
                receiver.addressResolved(kind("TCP", ip, verdict.port))
        receiver.resolutionComplete()

    @staticmethod
    def _failed(receiver, host: str, failure) -> None:
        logger.warning("netguard: lookup of %s failed: %s", host, failure.getErrorMessage())
        receiver.resolutionComplete()
