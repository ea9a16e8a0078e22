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
  is under FILES_STORE or SEARCH_MEDIA_ROOTS (thumbnails also DATA_DIR/thumbnails and
  THUMBNAILS_URI) and, for videos, its bytes are still the sha256 the catalogue recorded (hashed
  once per device, inode, size and mtime);
- an object (``s3://``, ``gs://``: no disk shared with the workers) only if its URI is a plain
  object name (no ``.``/``..``/empty segment, no ``%``, ``?``, ``#``, backslash) under a bucket
  prefix among those roots, compared segment by segment (``s3://b/`` is no root of
  ``s3://b-evil/``), and, for videos, while its size and sha256 are the recorded ones (hashed once
  per ETag / generation); it is streamed by ranged GETs pinned to that version (S3 ``If-Match``,
  GCS ``generation``), so bytes replaced mid-stream cut the response short.
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
from crawler import locations
from processing.catalogue.base import Catalogue, SearchQuery
from processing.catalogue.documents import doc_tags, public_doc

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"index.html", "app.js", "style.css"}
VIDEO_ID = re.compile(r"^[0-9a-f]{16,128}$")
CHUNK = 256 * 1024
OBJECT_CHUNK = 1024 * 1024  # one ranged GET of an object while streaming or hashing it
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


def location_of(path_value: str | None) -> Path | str | None:
    """A document's file: a local path, an object URI (``s3://``, ``gs://``; a relative path under
    a bucket FILES_STORE too), or None for anything else (http...)."""
    if isinstance(path_value, str) and locations.is_remote(path_value):
        return path_value
    store = settings.FILES_STORE
    if isinstance(path_value, str) and path_value and "://" not in path_value and locations.is_remote(store):
        return Path(path_value) if Path(path_value).is_absolute() else f"{store.rstrip('/')}/{path_value}"
    return local_path(path_value)


def default_media_roots() -> list[str]:
    """FILES_STORE and SEARCH_MEDIA_ROOTS (folders or bucket prefixes): the only places videos are served from."""
    store = settings.FILES_STORE
    first = store if locations.is_remote(store) else local_path(store) if "://" in store else Path(store)
    return [str(r) for r in (first, *settings.SEARCH_MEDIA_ROOTS) if r]


def default_thumbnail_roots(media_roots: list[str]) -> list[str]:
    """The media roots, DATA_DIR/thumbnails and THUMBNAILS_URI (where the frames stage writes them)."""
    thumbs = getattr(settings, "THUMBNAILS_URI", "")
    extra = [thumbs if locations.is_remote(thumbs) else str(locations.local_file(thumbs))] if thumbs else []
    return [*media_roots, str(Path(settings.DATA_DIR) / "thumbnails"), *extra]


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class ObjectFile:
    """One version of an object, read by ranged GETs of at most what is asked (no read-ahead).

    S3: s3fs's own file, whose reads carry ``If-Match: <ETag seen at open>``; GCS: reads pinned
    to the generation seen at open. An object replaced after opening fails the next read
    (``OSError`` / ``FileNotFoundError``) instead of mixing two versions' bytes.
    """

    chunk = OBJECT_CHUNK

    def __init__(self, uri: str):
        self.fs, self.path = locations.filesystem(uri)
        self.fs.invalidate_cache(self.path)  # a listing's cached ETag may be stale
        self.pos = 0
        self._file = None
        if locations.scheme_of(uri) == "s3":
            self._file = self.fs.open(self.path, "rb", block_size=self.chunk, cache_type="none")
            info = self._file.details
            self.version = info.get("ETag")
        else:
            info = self.fs.info(self.path)
            self.version = info.get("generation") or None
            self._pin = {"generation": self.version} if self.version else {}
        if info.get("type") == "directory":
            self.close()
            raise FileNotFoundError(uri)
        self.size = int(info.get("size") or 0)

    def seek(self, pos: int) -> None:
        self.pos = pos

    def read(self, n: int) -> bytes:
        n = max(0, min(n, self.size - self.pos))
        if n == 0:
            return b""
        if self._file is not None:
            self._file.seek(self.pos)
            data = self._file.read(n)
        else:
            data = self.fs.cat_file(self.path, start=self.pos, end=self.pos + n, **self._pin)
        self.pos += len(data)
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> ObjectFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ServedFiles:
    """Opens a document's file only under the roots, and a video only while it is the indexed file.

    The real path (symlinks resolved) must lie under a root; the file is opened without following
    a final symlink, and the opened descriptor's own path (``/proc/self/fd``) is checked again, so a
    link swapped in between is caught. A video's bytes must hash to the sha256 its document
    records; the answer is kept per (device, inode, size, mtime, sha256), so a file is hashed once
    and again only when it changes. Roots that are bucket prefixes (``s3://``, ``gs://``) serve
    objects under them (``ObjectFile``; see the module docstring), hashed once per (URI, ETag or
    generation, size, sha256).
    """

    def __init__(self, media_roots: list[str], thumbnail_roots: list[str], cache_size: int = 4096):
        self.media_roots, self.media_buckets = self._roots(media_roots)
        self.thumbnail_roots, self.thumbnail_buckets = self._roots(thumbnail_roots)
        self.cache_size = cache_size
        self._verified: OrderedDict[tuple, bool] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _roots(roots: list[str]) -> tuple[list[str], list[tuple[str, str, tuple[str, ...]]]]:
        """(local folders, real paths), (bucket prefixes, parsed); ValueError for a prefix that is none."""
        local, buckets = [], []
        for root in map(str, roots):
            if not locations.is_remote(root):
                local.append(os.path.realpath(root))
            elif (name := locations.object_name(root, root=True)) is not None:
                buckets.append(name)
            else:
                raise ValueError(f"{root!r} is no bucket prefix the search page can serve from (s3://BUCKET/prefix)")
        return local, buckets

    def bucket_roots(self) -> list[str]:
        """Each bucket prefix served from, as a URI (``serve`` checks that they answer before it starts)."""
        names = dict.fromkeys(self.media_buckets + self.thumbnail_buckets)
        return [f"{s}://{b}/{'/'.join(k)}".rstrip("/") for s, b, k in names]

    def open(self, doc: dict[str, Any], kind: str):
        """(file object, size, name) of the document's ``media`` or ``thumb``, or an error code."""
        path = location_of(doc.get("path") if kind == "media" else doc.get("thumbnail_path"))
        roots = self.media_roots if kind == "media" else self.thumbnail_roots
        if isinstance(path, str):
            return self._open_object(path, doc, kind)
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
        return self._verify(f, doc, st.st_size, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))

    def _open_object(self, uri: str, doc: dict[str, Any], kind: str):
        name = locations.object_name(uri)
        buckets = self.media_buckets if kind == "media" else self.thumbnail_buckets
        if name is None or not locations.object_under(name, buckets):
            return "file_not_available"
        scheme, bucket, key = name
        try:
            f = ObjectFile(f"{scheme}://{bucket}/{'/'.join(key)}")  # rebuilt from the checked parts
        except Exception as exc:  # noqa: BLE001 - missing object, denied, store down: not servable
            log.info("object %s not served: %s: %s", uri, type(exc).__name__, str(exc)[:200])
            return "file_not_available"
        code = None
        if kind == "media":
            try:  # a version without an ETag / generation is hashed every time (no key to cache it by)
                code = self._verify(f, doc, f.size, (uri, f.version, f.size) if f.version else None)
            except Exception as exc:  # noqa: BLE001 - replaced or gone while being hashed
                log.info("object %s not verified: %s: %s", uri, type(exc).__name__, str(exc)[:200])
                code = "file_changed"
        if code:
            f.close()
            return code
        return f, f.size, key[-1]

    def _verify(self, f, doc: dict[str, Any], size: int, version: tuple | None) -> str | None:
        """None while ``f`` (at 0) has the size and sha256 the document records, else the error code."""
        if isinstance(doc.get("size_bytes"), int) and doc["size_bytes"] != size:
            return "file_changed"  # not the bytes the catalogue recorded
        expected = str(doc.get("sha256") or doc.get("video_id") or "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            return "file_unverified"  # nothing recorded to compare the bytes with
        key = (*version, expected) if version else None
        with self._lock:
            ok = self._verified.get(key) if key else None
        if ok is None:
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(getattr(f, "chunk", 1024 * 1024)), b""):
                digest.update(chunk)
            f.seek(0)
            ok = digest.hexdigest() == expected
            if key:
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
            try:
                chunk = f.read(min(getattr(f, "chunk", CHUNK), left))
            except Exception as exc:  # noqa: BLE001 - an object replaced or gone mid-stream: cut it short
                if not isinstance(f, ObjectFile):
                    raise
                log.warning("stopped streaming %s at byte %d: %s: %s", name, end - left + 1, type(exc).__name__,
                            str(exc)[:200])  # fmt: skip
                self.close_connection = True
                return None
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)
        return None


class SearchServer(ThreadingHTTPServer):
    """The search page's server; every limit defaults to its setting (see the module docstring).

    ``token``: None takes SEARCH_TOKEN; "" is none (allowed on loopback only). ``media_roots``
    (folders or bucket prefixes): None takes FILES_STORE + SEARCH_MEDIA_ROOTS; ``thumbnail_roots``:
    None takes the media roots, DATA_DIR/thumbnails and THUMBNAILS_URI.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, catalogue: Catalogue, host: str = "127.0.0.1", port: int = 8000, *,
                 token: str | None = None, media_roots: list[str] | None = None,
                 thumbnail_roots: list[str] | None = None,
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
        thumbs = default_thumbnail_roots(roots) if thumbnail_roots is None else [str(r) for r in thumbnail_roots]
        self.files = ServedFiles(roots, thumbs)
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
