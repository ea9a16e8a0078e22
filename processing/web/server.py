"""The search page's HTTP server: a JSON API over the catalogue, the static page, media by id.

Standard library only (``http.server``). Files are served by ``video_id`` from the path the
catalogue recorded, never from a path in the URL; Range requests are honoured so the browser's
player can seek. Relative paths in documents are taken under ``FILES_STORE``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import settings
from processing.catalogue import Catalogue
from processing.search import SearchQuery, doc_tags, public_doc

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"index.html", "app.js", "style.css"}
VIDEO_ID = re.compile(r"^[0-9a-f]{16,128}$")
CHUNK = 256 * 1024


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


def local_file(path_value: str | None) -> Path | None:
    """The local file a document names (absolute, file:// or relative to FILES_STORE), if any."""
    if not path_value or not isinstance(path_value, str):
        return None
    if path_value.startswith("file://"):
        path_value = unquote(urlsplit(path_value).path)
    elif re.match(r"^[a-z][a-z0-9+.-]*://", path_value):
        return None  # remote storage (http, s3, gs): not served from here
    path = Path(path_value)
    if not path.is_absolute():
        path = Path(settings.FILES_STORE) / path
    try:
        path = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if path.is_file() else None


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

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        path = url.path
        try:
            if path in ("/", "/index.html"):
                return self._static("index.html")
            if path.startswith("/static/"):
                return self._static(path[len("/static/") :])
            if path.startswith("/api/"):
                status, payload = self.app.api(path[len("/api/") :], parse_qs(url.query))
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
        path = local_file(doc.get("path") if kind == "media" else doc.get("thumbnail_path"))
        if path is None:
            return self._json(404, {"error": "file_not_available"})
        size = path.stat().st_size
        roots = [Path(r).resolve() for r in settings.SEARCH_MEDIA_ROOTS]
        if roots and not any(path.is_relative_to(r) for r in roots):
            return self._json(404, {"error": "file_not_available"})
        if kind == "media" and isinstance(doc.get("size_bytes"), int) and doc["size_bytes"] != size:
            return self._json(404, {"error": "file_changed"})  # not the bytes the catalogue recorded
        ctype = mimetypes.guess_type(path.name)[0] or ("video/mp4" if kind == "media" else "image/jpeg")
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
        with open(path, "rb") as f:
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
    daemon_threads = True

    def __init__(self, catalogue: Catalogue, host: str = "127.0.0.1", port: int = 8000):
        handler = type("BoundHandler", (Handler,), {"app": SearchApp(catalogue)})
        super().__init__((host, port), handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, notebooks); stop with ``shutdown()``."""
        thread = threading.Thread(target=self.serve_forever, name="search-server", daemon=True)
        thread.start()
        return thread
