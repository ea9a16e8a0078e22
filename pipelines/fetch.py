"""Streaming HTTP(S) download into a file: every redirect hop checked and pinned by netguard, memory bounded.

``fetch(url, dest, guard=..., limits=...)`` runs in a thread (it blocks) and returns a
``Fetched`` (final URL, size, sha256 computed on the way, content type) or raises
``MediaError`` with a code from ``crawler.errors``. What it holds in memory is one read
(``Limits.chunk_size``, 64 KiB) and, for a gzip/deflate body, one bounded inflate step: the
file is written as it arrives, never kept whole.

- Every hop (the URL, then each ``Location``) passes ``guard.check`` and the caller's
  ``check(url)`` (opt-out list, robots.txt) before any connection; the socket goes only to
  the addresses the guard checked (``Guard.create_connection``), so a name cannot answer one
  address to the check and another to the connection. A refused hop ends with netguard's code
  (``private_address``...). At most ``Limits.max_redirects`` hops (0: a redirect is its
  ``http_3xx``); a loop or more hops is ``too_many_redirects``.
- ``Accept-Encoding: identity`` is asked; a server that compresses anyway has its gzip or
  deflate body inflated in bounded steps and counted after decoding, so a gzip bomb stops at
  ``max_bytes`` (``too_large``); other encodings are ``unsupported_encoding``.
- ``Limits.timeout`` bounds the whole download (every hop); each socket read waits at most
  what is left of it. A declared ``Content-Length`` above ``max_bytes`` is refused before the
  body; a body that ends before its declared length is ``truncated``.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from w3lib.url import safe_url_string

from crawler.errors import MediaError
from crawler.netguard import DEFAULT_PORTS, Guard, Refused

CHUNK_BYTES = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Limits:
    """What one download may take: bytes (after decoding), seconds (all hops), redirect hops."""

    max_bytes: int
    timeout: float
    max_redirects: int = 10
    chunk_size: int = CHUNK_BYTES

    def __post_init__(self):
        if self.max_bytes <= 0 or self.timeout <= 0 or self.max_redirects < 0 or self.chunk_size <= 0:
            raise ValueError(f"bad download limits: {self}")


@dataclass
class Fetched:
    """A complete download: the final URL, the bytes written and their sha256."""

    url: str
    size: int
    sha256: str
    content_type: str | None = None
    redirects: list[str] = field(default_factory=list)  # the URLs that redirected, in order


class _Deadline:
    def __init__(self, seconds: float, cancel: threading.Event | None):
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.cancel = cancel

    def left(self) -> float:
        if self.cancel is not None and self.cancel.is_set():
            raise MediaError("timeout", "download cancelled (the crawl is closing)")
        left = self.end - time.monotonic()
        if left <= 0:
            raise MediaError("timeout", f"download ran over {self.seconds:g}s")
        return left


def _connection(url: str, guard: Guard, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS[scheme]
    if scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout,
                                           context=ssl.create_default_context())  # fmt: skip
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    # the one way http.client opens its socket (TLS wraps it afterwards, checking the name):
    # only to the addresses the guard checked
    conn._create_connection = guard.create_connection
    return conn


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class _Inflater:
    """gzip / deflate decoding in steps of at most ``limit`` output bytes (bombs stay bounded)."""

    def __init__(self, encoding: str, limit: int):
        self.encoding, self.limit = encoding, limit
        self.decoder = None if encoding == "deflate" else zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data) -> Iterator[bytes]:
        if self.decoder is None:  # deflate: zlib-wrapped (RFC) or raw (what some servers send)
            head = bytes(data[:2])
            wrapped = len(head) == 2 and head[0] & 0x0F == 8 and int.from_bytes(head, "big") % 31 == 0
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        try:
            while data:
                out = self.decoder.decompress(data, self.limit)
                if out:
                    yield out
                data = self.decoder.unconsumed_tail
                if not data and self.decoder.eof and self.decoder.unused_data:  # next gzip member
                    data = self.decoder.unused_data
                    self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise MediaError("bad_content_encoding", f"{self.encoding}: {exc}") from exc

    @property
    def complete(self) -> bool:
        return self.decoder is None or self.decoder.eof


def _body(resp, dest: Path, limits: Limits, deadline: _Deadline) -> tuple[int, str]:
    """Stream the response body into ``dest``; (bytes written, sha256 hex).

    A socket read waits at most the time that was left when the connection opened (its
    timeout); the deadline is checked after every read, so a trickle cannot outlast it.
    """
    encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding in ("x-gzip",):
        encoding = "gzip"
    if encoding not in ("identity", "gzip", "deflate"):
        raise MediaError("unsupported_encoding", f"Content-Encoding: {encoding[:40]}")
    inflater = _Inflater(encoding, limits.chunk_size) if encoding != "identity" else None
    declared = resp.length  # None when chunked or unknown
    if inflater is None and declared is not None and declared > limits.max_bytes:
        raise MediaError("too_large", f"declares {declared} bytes > MEDIA_MAX_BYTES={limits.max_bytes}")
    digest, size = hashlib.sha256(), 0
    try:
        out = open(dest, "wb")  # noqa: SIM115 - closed below; write errors are store errors
    except OSError as exc:
        raise MediaError("store_error", str(exc)) from exc
    with out:
        while True:
            deadline.left()
            try:
                data = resp.read1(limits.chunk_size)
            except http.client.IncompleteRead as exc:
                raise MediaError("truncated", f"connection closed after {size} bytes") from exc
            except http.client.HTTPException as exc:  # e.g. an overlong chunk-size line
                raise MediaError("bad_response", f"{type(exc).__name__} after {size} bytes") from exc
            except (TimeoutError, socket.timeout) as exc:
                deadline.left()  # past the whole budget: that message
                raise MediaError("timeout", f"the server stalled after {size} bytes") from exc
            except OSError as exc:
                raise MediaError("truncated", f"{type(exc).__name__} after {size} bytes") from exc
            if not data:
                break
            for piece in inflater.feed(data) if inflater else (data,):
                size += len(piece)
                if size > limits.max_bytes:
                    what = "decoded " if inflater else ""
                    raise MediaError("too_large", f"{what}body passed MEDIA_MAX_BYTES={limits.max_bytes}")
                try:
                    out.write(piece)
                except OSError as exc:
                    raise MediaError("store_error", str(exc)) from exc
                digest.update(piece)
    if resp.length:  # http.client counts down what the declared length still expects
        raise MediaError("truncated", f"connection closed {resp.length} bytes before the declared end")
    if inflater is not None and not inflater.complete:
        raise MediaError("truncated", f"{encoding} stream ended early")
    if size == 0:
        raise MediaError("empty_file", "0 bytes")
    return size, digest.hexdigest()


def _request(conn, url: str, headers: dict[str, str], deadline: _Deadline):
    """Send the GET and read the head; transport errors as MediaError codes."""
    try:
        conn.request("GET", _target(url), headers=headers)
        return conn.getresponse()
    except Refused as exc:  # the connection-time check (a new DNS answer) refused it
        raise MediaError(exc.code, str(exc)) from exc
    except ConnectionRefusedError as exc:
        raise MediaError("connection_refused", str(exc)) from exc
    except ssl.SSLError as exc:
        raise MediaError("tls_error", str(exc)[:300]) from exc
    except (TimeoutError, socket.timeout) as exc:
        deadline.left()
        raise MediaError("timeout", f"no answer in {conn.timeout:.1f}s") from exc
    except http.client.RemoteDisconnected as exc:
        raise MediaError("connection_error", "closed without an answer") from exc
    except http.client.HTTPException as exc:  # bad status line, header flood, overlong line
        raise MediaError("bad_response", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from exc
    except socket.gaierror as exc:
        raise MediaError("unresolvable", str(exc)) from exc
    except (UnicodeError, ValueError) as exc:  # a URL http.client refuses to send
        raise MediaError("bad_url", str(exc)[:200]) from exc
    except OSError as exc:
        raise MediaError("connection_error", f"{type(exc).__name__}: {exc}") from exc


def fetch(
    url: str,
    dest: Path,
    *,
    guard: Guard,
    limits: Limits,
    headers: dict[str, str] | None = None,
    check: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Fetched:
    """Download ``url`` into ``dest`` (see the module docstring); raises ``MediaError``.

    ``check(url)`` is called for every hop before it is fetched and raises ``MediaError`` to
    refuse it. ``cancel`` set from another thread stops the download at its next read.
    """
    deadline = _Deadline(limits.timeout, cancel)
    sent = {"Accept": "*/*", **(headers or {}), "Accept-Encoding": "identity"}
    url = safe_url_string(url)
    redirects: list[str] = []
    while True:
        verdict = guard.check(url)
        if not verdict.ok:
            hop = f"redirect {len(redirects)} to " if redirects else ""
            raise MediaError(verdict.reason, f"{hop}{url[:200]}")
        if check is not None:
            check(url)
        conn = _connection(url, guard, deadline.left())
        try:
            resp = _request(conn, url, sent, deadline)
            if resp.status in REDIRECT_STATUSES and limits.max_redirects:
                location = (resp.getheader("Location") or "").strip()
                if not location:
                    raise MediaError(f"http_{resp.status}", "redirect without a Location")
                target = safe_url_string(urljoin(url, location))
                redirects.append(url)
                if target in redirects:
                    raise MediaError("too_many_redirects", f"redirect loop back to {target[:200]}")
                if len(redirects) > limits.max_redirects:
                    raise MediaError("too_many_redirects", f"more than {limits.max_redirects} redirects")
                url = target
                continue
            if resp.status != 200:
                raise MediaError(f"http_{resp.status}", f"HTTP {resp.status} {resp.reason[:60]}")
            size, digest = _body(resp, dest, limits, deadline)
            return Fetched(url, size, digest, resp.getheader("Content-Type"), redirects)
        finally:
            conn.close()
