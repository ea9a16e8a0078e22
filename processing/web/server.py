"""The search page's HTTP server: a JSON API over the catalogue, the static page, media by id.

Standard library only (``http.server``). Files are served by ``video_id`` from the path the
catalogue recorded, never from a path in the URL; Range requests are honoured so the browser's
player can seek. Relative paths in documents are taken under ``FILES_STORE``.

Hardening (each a setting, see ``SearchServer``):
- a token (``SEARCH_TOKEN`` / ``serve --token``) is needed to bind anything but loopback and,
  once set, on every request: ``Authorization: Bearer <token>``, or ``?token=<token>`` once in
  the browser, which sets an HttpOnly SameSite=Strict cookie and redirects to the bare page;
- CSP, nosniff, Referrer-Policy and X-Frame-Options headers on every response;
- a client has ``SEARCH_REQUEST_TIMEOUT`` seconds to send its whole request (idle and slow-loris
  connections are cut), each later read or write ``SEARCH_SOCKET_TIMEOUT``; at most
  ``SEARCH_MAX_CONNECTIONS`` are served at once (one thread each), more are answered 503;
- a file is served only if its real path (symlinks resolved, then the opened descriptor's path)
  is under FILES_STORE or SEARCH_MEDIA_ROOTS (thumbnails also DATA_DIR/thumbnails) and, for
  videos, its bytes are still the sha256 the catalogue recorded (hashed once per
  device, inode, size and mtime).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import json
import logging
import mimetypes
import os
import re
import socket
import stat
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import settings
from processing.catalogue.base import Catalogue, SearchQuery
from processing.catalogue.documents import doc_tags, public_doc

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"index.html", "app.js", "style.css"}
VIDEO_ID = re.compile(r"^[0-9a-f]{16,128}$")
CHUNK = 256 * 1024
TOKEN_COOKIE = "vp_search_token"
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)  # fmt: skip
_BUSY_BODY = b'{"error": "busy", "message": "too many open connections, retry shortly"}'
BUSY_RESPONSE = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    + b"".join(f"{k}: {v}\r\n".encode() for k, v in SECURITY_HEADERS)
    + f"Connection: close\r\nContent-Length: {len(_BUSY_BODY)}\r\n\r\n".encode() + _BUSY_BODY
)


def card(doc: dict[str, Any], score: float | None = None) -> dict[str, Any]:
    """What the result grid shows for one video."""
    vid = doc.get("video_id")
    return {
        "video_id": vid,
        "title": doc.get("title") or doc.get("url") or vid,
        "score": score,
        "duration": doc.get("duration"),
        "width": doc.get("width"),
        "height": doc.get("height"),
        "source": doc.get("source"),
        "license": doc.get("license"),
        "license_id": doc.get("license_id"),  # normalised (crawler/licenses.py); the facet's values
        "status": doc.get("status"),
        "duplicate_of": doc.get("duplicate_of"),
        "similarity": doc.get("similarity"),
        "tags": doc_tags(doc)[:12],
        "thumbnail": f"/thumb/{vid}" if doc.get("thumbnail_path") else None,
        "media": f"/media/{vid}" if doc.get("path") else None,
        "url": doc.get("url"),
    }


def result_json(result) -> dict[str, Any]:
    q = result.query
    return {
        "total": result.total,
        "page": q.page,
        "per_page": q.per_page,
        "pages": max(1, -(-result.total // q.per_page)),
        "similar_to": result.similar_to,
        "backend": result.backend,
        "facets": {k: [{"value": v, "count": n} for v, n in vals] for k, vals in result.facets.items()},
        "hits": [card(h.doc, h.score) for h in result.hits],
    }


def local_path(path_value: str | None) -> Path | None:
    """The local path a document names (absolute, file:// or relative to FILES_STORE), if any."""
    if not path_value or not isinstance(path_value, str):
        return None
    if path_value.startswith("file://"):
        path_value = unquote(urlsplit(path_value).path)
    elif re.match(r"^[a-z][a-z0-9+.-]*://", path_value):
        return None  # remote storage (http, s3, gs): not served from here
    path = Path(path_value)
    if not path.is_absolute():
        store = local_path(settings.FILES_STORE) if "://" in settings.FILES_STORE else Path(settings.FILES_STORE)
        if store is None:
            return None
        path = store / path
    return path


def default_media_roots() -> list[str]:
    """FILES_STORE (when local) and SEARCH_MEDIA_ROOTS: the only folders videos are served from."""
    store = local_path(settings.FILES_STORE) if "://" in settings.FILES_STORE else Path(settings.FILES_STORE)
    return [str(p) for p in (store, *map(Path, settings.SEARCH_MEDIA_ROOTS)) if p is not None]


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class ServedFiles:
    """Opens a document's file only under the roots, and a video only while it is the indexed file.

    The real path (symlinks resolved) must lie under a root; the file is opened without following
    a final symlink, and the opened descriptor's own path (``/proc/self/fd``) is checked again, so a
    link swapped in between is caught. A video's bytes must hash to the sha256 its document
    records; the answer is kept per (device, inode, size, mtime, sha256), so a file is hashed once
    and again only when it changes.
    """

    def __init__(self, media_roots: list[str], thumbnail_roots: list[str], cache_size: int = 4096):
        self.media_roots = [os.path.realpath(r) for r in media_roots]
        self.thumbnail_roots = [os.path.realpath(r) for r in thumbnail_roots]
        self.cache_size = cache_size
        self._verified: OrderedDict[tuple, bool] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, doc: dict[str, Any], kind: str):
        """(file object, size, name) of the document's ``media`` or ``thumb``, or an error code."""
        path = local_path(doc.get("path") if kind == "media" else doc.get("thumbnail_path"))
        roots = self.media_roots if kind == "media" else self.thumbnail_roots
        if path is None:
            return "file_not_available"
        real = os.path.realpath(path)
        if not _inside(real, roots):
            return "file_not_available"
        try:
            f = open(os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)), "rb")
        except OSError:
            return "file_not_available"
        code = self._check(f, doc, kind, roots)
        if code:
            f.close()
            return code
        return f, os.fstat(f.fileno()).st_size, os.path.basename(real)

    def _check(self, f, doc: dict[str, Any], kind: str, roots: list[str]) -> str | None:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return "file_not_available"
        try:
            opened = os.readlink(f"/proc/self/fd/{f.fileno()}")
        except OSError:
            opened = None  # no /proc (not Linux): the realpath check above stands alone
        if opened is not None and not _inside(opened, roots):
            return "file_not_available"
        if kind != "media":
            return None
        if isinstance(doc.get("size_bytes"), int) and doc["size_bytes"] != st.st_size:
            return "file_changed"  # not the bytes the catalogue recorded
        expected = str(doc.get("sha256") or doc.get("video_id") or "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            return "file_unverified"  # nothing recorded to compare the bytes with
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, expected)
        with self._lock:
            ok = self._verified.get(key)
        if ok is None:
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(chunk)
            f.seek(0)
            ok = digest.hexdigest() == expected
            with self._lock:
                self._verified[key] = ok
                while len(self._verified) > self.cache_size:
                    self._verified.popitem(last=False)
        return None if ok else "file_changed"


def is_loopback(host: str) -> bool:
    """True when ``host`` names only loopback addresses ("" and 0.0.0.0 mean every interface)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP) if host else []
        except (OSError, UnicodeError):
            return False
        return bool(infos) and all(is_loopback(info[4][0]) for info in infos)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class _HeadReader(io.RawIOBase):
    """The connection's reads, cut off once the request head is overdue (idle or slow clients)."""

    def __init__(self, sock: socket.socket, deadline: float, op_timeout: float | None):
        self.sock, self.deadline, self.op_timeout = sock, deadline, op_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request not received in time")
            self.sock.settimeout(min(left, self.op_timeout) if self.op_timeout else left)
        return self.sock.recv_into(buffer)


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(start, end) inclusive for one ``bytes=`` range; None if absent; "bad" if unsatisfiable."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return "bad"
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        length = int(m.group(2))
        if length == 0:
            return "bad"
        start, end = max(0, size - length), size - 1
    end = min(end, size - 1)
    if start > end or start >= size:
        return "bad"
    return start, end


class SearchApp:
    """The catalogue behind the page; shared by the server's threads."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue

    def api(self, route: str, params: dict[str, list[str]]) -> tuple[int, Any]:
        parts = [p for p in route.split("/") if p]
        if parts == ["search"]:
            return 200, result_json(self.catalogue.search(SearchQuery.from_params(params)))
        if parts == ["counts"]:
            return 200, self.catalogue.counts()
        if len(parts) == 2 and parts[0] in ("video", "similar", "duplicates"):
            vid = parts[1]
            if not VIDEO_ID.match(vid):
                return 400, {"error": "bad_video_id"}
            if parts[0] == "similar":
                q = SearchQuery.from_params(params)
                return 200, result_json(self.catalogue.similar(vid, q))
            if parts[0] == "duplicates":
                cluster = self.catalogue.duplicates(vid)
                return (404, {"error": "not_found"}) if cluster is None else (200, self._cluster(cluster))
            doc = self.catalogue.get(vid)
            if doc is None:
                return 404, {"error": "not_found"}
            return 200, {**card(doc), "doc": public_doc(doc), "cluster": self._cluster(self.catalogue.duplicates(vid))}
        return 404, {"error": "no_such_api"}

    @staticmethod
    def _cluster(cluster: dict[str, Any]) -> dict[str, Any]:
        canonical = cluster["canonical"]
        return {
            "video_id": cluster["video_id"],
            "canonical": card(canonical) if not canonical.get("missing") else {"video_id": canonical["video_id"]},
            "duplicates": [card(d) for d in cluster["duplicates"]],
        }


class Handler(BaseHTTPRequestHandler):
    server_version = "videopipe-search"
    app: SearchApp  # set on the subclass made by make_server

    def log_message(self, fmt, *args):  # route the access log through logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def setup(self):
        self.timeout = self.server.socket_timeout  # each read / write of the connection
        super().setup()
        self.rfile.close()
        self._head = _HeadReader(self.connection, time.monotonic() + self.server.request_timeout, self.timeout)
        self.rfile = io.BufferedReader(self._head)
        self._set_cookie = False

    def end_headers(self):
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        if self._set_cookie:
            cookie = f"{TOKEN_COOKIE}={self.server.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
            self.send_header("Set-Cookie", cookie)
        super().end_headers()

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        """Whether the request carries the token (header, cookie or ``?token=``); always without one."""
        token = self.server.token
        if not token:
            return True
        same = lambda a, b: hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode())  # noqa: E731
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and same(auth[7:].strip(), token):
            return True
        try:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get(TOKEN_COOKIE)
        except CookieError:
            morsel = None
        if morsel is not None and same(morsel.value, self.server.cookie_value):
            return True
        if any(same(t, token) for t in query.get("token", [])[:1]):
            self._set_cookie = True  # the browser page: the cookie carries it from now on
            return True
        return False

    def _json(self, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._head.deadline = None  # the request head is in: from now on only the socket timeout
        self.connection.settimeout(self.timeout)
        url = urlsplit(self.path)
        path = url.path
        try:
            query = parse_qs(url.query)
            if not self._authorized(query):
                return self._json(401, {"error": "unauthorized", "message": "this server needs its token: open "
                                        "/?token=<token> once, or send Authorization: Bearer <token>"},
                                  (("WWW-Authenticate", 'Bearer realm="videopipe-search"'),))  # fmt: skip
            if self._set_cookie and path in ("/", "/index.html"):  # keep the token out of the address bar
                rest = urlencode([(k, v) for k, vs in query.items() if k != "token" for v in vs])
                self.send_response(303)
                self.send_header("Location", path + (f"?{rest}" if rest else ""))
                self.send_header("Content-Length", "0")
                return self.end_headers()
            query.pop("token", None)
            if path in ("/", "/index.html"):
                return self._static("index.html")
            if path.startswith("/static/"):
                return self._static(path[len("/static/") :])
            if path.startswith("/api/"):
                status, payload = self.app.api(path[len("/api/") :], query)
                return self._json(status, payload)
            m = re.fullmatch(r"/(media|thumb)/([^/]+)", path)
            if m:
                return self._file(m.group(1), m.group(2))
            return self._json(404, {"error": "not_found"})
        except ValueError as exc:  # a bad query parameter
            return self._json(400, {"error": "bad_request", "message": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
            log.exception("search page error on %s", path)
            return self._json(500, {"error": "internal_error", "message": type(exc).__name__})

    def _static(self, name: str) -> None:
        if name not in STATIC_FILES:
            return self._json(404, {"error": "not_found"})
        body = (STATIC_DIR / name).read_bytes()
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, kind: str, vid: str) -> None:
        if not VIDEO_ID.match(vid):
            return self._json(400, {"error": "bad_video_id"})
        doc = self.app.catalogue.get(vid)
        if doc is None:
            return self._json(404, {"error": "not_found"})
        opened = self.server.files.open(doc, kind)
        if isinstance(opened, str):
            return self._json(404, {"error": opened})
        with opened[0] as f:
            return self._send_file(f, opened[1], opened[2], kind)

    def _send_file(self, f, size: int, name: str, kind: str) -> None:
        ctype = mimetypes.guess_type(name)[0] or ("video/mp4" if kind == "media" else "image/jpeg")
        rng = parse_range(self.headers.get("Range", ""), size)
        if rng == "bad":
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        start, end = rng if rng else (0, size - 1)
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(max(0, end - start + 1)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return None
        f.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)
        return None


class SearchServer(ThreadingHTTPServer):
    """The search page's server; every limit defaults to its setting (see the module docstring).

    ``token``: None takes SEARCH_TOKEN; "" is none (allowed on loopback only). ``media_roots``:
    None takes FILES_STORE + SEARCH_MEDIA_ROOTS; thumbnails may also come from DATA_DIR/thumbnails.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, catalogue: Catalogue, host: str = "127.0.0.1", port: int = 8000, *,
                 token: str | None = None, media_roots: list[str] | None = None,
                 max_connections: int | None = None, request_timeout: float | None = None,
                 socket_timeout: float | None = None):  # fmt: skip
        self.token = settings.SEARCH_TOKEN if token is None else token
        if not self.token and not is_loopback(host):
            raise ValueError(f"refusing to serve on {host or 'every interface'!r} without a token: "
                             "binding anything but loopback needs --token or SEARCH_TOKEN")  # fmt: skip
        self.cookie_value = hmac.new(self.token.encode(), b"videopipe-search-cookie", "sha256").hexdigest()
        self.max_connections = settings.SEARCH_MAX_CONNECTIONS if max_connections is None else max_connections
        self.request_timeout = settings.SEARCH_REQUEST_TIMEOUT if request_timeout is None else request_timeout
        self.socket_timeout = settings.SEARCH_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout
        if not isinstance(self.max_connections, int) or self.max_connections < 1:
            raise ValueError(f"SEARCH_MAX_CONNECTIONS must be a positive integer, got {self.max_connections!r}")
        if not self.request_timeout > 0 or not self.socket_timeout > 0:
            raise ValueError("SEARCH_REQUEST_TIMEOUT and SEARCH_SOCKET_TIMEOUT must be > 0 seconds, got "
                             f"{self.request_timeout!r}, {self.socket_timeout!r}")  # fmt: skip
        roots = default_media_roots() if media_roots is None else [str(r) for r in media_roots]
        self.files = ServedFiles(roots, [*roots, str(Path(settings.DATA_DIR) / "thumbnails")])
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused_busy = 0  # connections answered 503 because all slots were taken
        if ":" in host:
            self.address_family = socket.AF_INET6
        handler = type("BoundHandler", (Handler,), {"app": SearchApp(catalogue)})
        super().__init__((host, port), handler)

    def process_request(self, request, client_address):
        """One thread per connection, at most ``max_connections``; the rest get a 503 at once."""
        if not self._slots.acquire(blocking=False):
            self.refused_busy += 1
            try:
                request.settimeout(1.0)
                request.sendall(BUSY_RESPONSE)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, notebooks); stop with ``shutdown()``."""
        thread = threading.Thread(target=self.serve_forever, name="search-server", daemon=True)
        thread.start()
        return thread
