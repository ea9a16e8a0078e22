"""The local HTTP test site: static pages, real clips with Range, HLS, and one route per failure.

Routes (see each handler method):
  /<name>.html               a saved extraction case, tests/data/pages/web/<name, - as _>/input.html,
                             when there is one (each page stored once: video-tag.html is
                             pages/web/video_tag/input.html)
  /<path>                    static files from tests/data/site/ (index.html for directories)
  /media/<name>.mp4          the real clips tests/data/<name>.mp4 (video/mp4, Range support)
  /hls/bbb/index.m3u8 (+ts)  HLS made once with ffmpeg from bigbuckbunny.mp4
  /fail/404, /fail/500       those statuses
  /fail/slow.mp4             trickles a byte every SLOW_INTERVAL s, for ~SLOW_SECONDS
  /fail/truncated.mp4        declares the full Content-Length, sends half, closes
  /fail/wrong-type.mp4       a real mp4 served as text/plain (accepted: judged by content)
  /fail/html-as-video.mp4    HTML served as video/mp4 (rejected: not_a_video)
  /fail/huge.mp4             declares Content-Length 2 GB
  /fail/endless.mp4          no length, bytes until the client hangs up
  /fail/zero.mp4             0 bytes
  /fail/corrupt.mp4          an mp4's first 4 KiB then garbage
  /optout-header/<file>      tests/data/site/optout-header/<file> with ``X-Robots-Tag: noai``
  /gen/<i>.html              generated tree of N pages (``?n=N`` or GEN_PAGES env, default 100);
                             page i links to 3i+1..3i+3 and every K-th (GEN_VIDEO_EVERY, 5) has
                             a <video src="/media/...">
  /<name>.xml (.xml.gz)      a saved feed or sitemap, tests/data/pages/web/<name, - as _>/input.xml
                             (gzipped for .gz); saved responses name the site https://example.org,
                             served they name this site (so does /robots.txt, with its Sitemap: line)
  /archive_org/...           the Internet Archive's APIs from saved answers (pages/archive_org/):
                             advancedsearch.php?page=N -> search_page<N>, metadata/<id> -> <id>
                             (``{}`` for an unknown id, as the archive answers), download/<id>/<file>
                             -> 302 to the test clip the file is named after (as archive.org
                             redirects to a storage node)
  /commons/w/api.php         the Commons API from saved answers (pages/commons/category_page<N>),
                             followed by their ``continue`` values; their upload.wikimedia.org URLs
                             are served as /upload.wikimedia.org/... : the test clip each file is
                             named after, with the file's own content type
  /hostile/...               hostile servers (``_hostile``): redirect?to=URL[&n=hops],
                             redirect-loop, gzip-bomb.mp4 (gzip body inflating to ~1 GiB),
                             bad-gzip.mp4, brotli.mp4, chunked-truncated.mp4, bad-status,
                             header-flood, reset (closes without answering), hls-ssrf.m3u8?to=BASE
                             (an HLS manifest whose segments are BASE/hls/bbb/segNNN.ts),
                             m3u8-as-mp4.mp4?to=BASE (that manifest served as video/mp4), and
                             files/<name>: the files of ``Site(files_dir=...)``
  Every request's path is appended to ``Site.hits`` (what an "internal" site was asked).

Fixture ``site`` (session scope) returns ``http://127.0.0.1:PORT``. Standalone:
``python -m tests.site --port 8000``.
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import mimetypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, unquote_to_bytes, urlparse

DATA = Path(__file__).resolve().parent / "data"
SITE = DATA / "site"
SAVED_PAGES = DATA / "pages" / "web"  # crawler/extract.py's saved cases, also pages of the site
ARCHIVE_ORG = DATA / "pages" / "archive_org"  # saved Internet Archive API answers
COMMONS = DATA / "pages" / "commons"  # saved Wikimedia Commons API answers
# Hosts the saved answers name, and where this site serves them (prefix of the site's own URL).
SAVED_HOSTS = {"https://example.org": "", "https://upload.wikimedia.org": "/upload.wikimedia.org"}
CLIPS = sorted(p.stem for p in DATA.glob("*.mp4"))
SLOW_SECONDS = 30.0
SLOW_INTERVAL = 0.5
HUGE_BYTES = 2 * 1024**3
GEN_PAGES = int(os.environ.get("GEN_PAGES", "100"))
GEN_VIDEO_EVERY = int(os.environ.get("GEN_VIDEO_EVERY", "5"))

_hls_lock = threading.Lock()
_hls_dir: Path | None = None


def hls_dir() -> Path:
    """Make the HLS rendition of bigbuckbunny once (ffmpeg, stream copy, 1 s segments)."""
    global _hls_dir
    with _hls_lock:
        if _hls_dir is None or not (_hls_dir / "index.m3u8").exists():
            out = Path(tempfile.mkdtemp(prefix="site-hls-"))
            cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(DATA / "bigbuckbunny.mp4"),
                   "-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
                   "-hls_segment_filename", str(out / "seg%03d.ts"), str(out / "index.m3u8")]  # fmt: skip
            subprocess.run(cmd, check=True, timeout=60, capture_output=True)
            _hls_dir = out
        return _hls_dir


def saved_page(path: str) -> Path | None:
    """The saved case that ``/<name>.html`` (``.xml``, ``.xml.gz``) serves, or None (then
    tests/data/site/ has it)."""
    m = re.fullmatch(r"/([a-z0-9-]+)\.(html|xml)(\.gz)?", path)
    if not m or (m.group(3) and m.group(2) != "xml"):
        return None
    page = SAVED_PAGES / m.group(1).replace("-", "_") / f"input.{m.group(2)}"
    return page if page.is_file() else None


def clip_named(name: str) -> str | None:
    """The test clip a saved answer's file name starts with (``Bikes_(x).webm`` -> ``bikes``)."""
    name = unquote(name).rsplit("/", 1)[-1].lower()
    return next((c for c in sorted(CLIPS, key=len, reverse=True) if name.startswith(c.lower())), None)


class SiteHandler(SimpleHTTPRequestHandler):
    """One handler; routes by path prefix. Client hang-ups are ignored quietly."""

    server_version = "videopipe-test-site"
    protocol_version = "HTTP/1.1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(SITE), **kwargs)

    def log_message(self, format, *args):  # noqa: A002  (quiet: tests read results, not logs)
        if os.environ.get("SITE_LOG"):
            super().log_message(format, *args)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    # -- routing ------------------------------------------------------------------------
    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        url = urlparse(self.path)
        path = unquote(url.path)
        self._head = head
        self._extra = {}
        getattr(self.server, "hits", []).append(self.path)
        if path.startswith("/hostile/"):
            return self._hostile(path[len("/hostile/"):], parse_qs(url.query))
        if path.startswith("/fail/"):
            return self._fail(path[len("/fail/"):])
        if m := re.fullmatch(r"/media/([A-Za-z0-9_\-]+)\.mp4", path):
            return self._file(DATA / f"{m.group(1)}.mp4", "video/mp4")
        if path.startswith("/hls/bbb/"):
            name = path[len("/hls/bbb/"):]
            if not re.fullmatch(r"index\.m3u8|seg\d{3}\.ts", name):
                return self._status(404)
            ctype = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "video/mp2t"
            return self._file(hls_dir() / name, ctype)
        if m := re.fullmatch(r"/gen/(\d+)\.html", path):
            return self._gen(int(m.group(1)), parse_qs(url.query))
        if path.startswith("/optout-header/"):
            return self._static(extra={"X-Robots-Tag": "noai"})
        if path.startswith("/archive_org/"):
            return self._archive_org(path[len("/archive_org"):], parse_qs(url.query))
        if path == "/commons/w/api.php":
            return self._commons(parse_qs(url.query))
        if path.startswith("/upload.wikimedia.org/") and (clip := clip_named(path)):
            return self._file(DATA / f"{clip}.mp4", mimetypes.guess_type(path)[0] or "video/mp4")
        if path == "/robots.txt":
            return self._saved(SITE / "robots.txt", "text/plain; charset=utf-8")
        if saved := saved_page(path):
            if saved.suffix == ".xml":
                return self._saved(saved, "application/xml; charset=utf-8", gz=path.endswith(".gz"))
            return self._file(saved, "text/html; charset=utf-8")
        return self._static()

    # -- helpers --------------------------------------------------------------------------
    def _status(self, code: int, body: bytes = b"", ctype: str = "text/plain", headers=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _static(self, extra: dict | None = None):
        self._extra = extra or {}
        if self._head:
            return super().do_HEAD()
        return super().do_GET()

    def end_headers(self):
        for key, value in getattr(self, "_extra", {}).items():
            self.send_header(key, value)
        super().end_headers()

    def _file(self, path: Path, ctype: str):
        """A file with single-range support (``Range: bytes=a-b``)."""
        if not path.is_file():
            return self._status(404, b"not found")
        size = path.stat().st_size
        start, end, code = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())):
            a, b = m.groups()
            if a == "" and b:
                start, end = max(0, size - int(b)), size - 1
            else:
                start, end = int(a or 0), min(int(b) if b else size - 1, size - 1)
            if start > end or start >= size:
                return self._status(416, headers={"Content-Range": f"bytes */{size}"})
            code = 206
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self._head:
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(65536, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _saved(self, path: Path, ctype: str, gz: bool = False):
        """A saved answer, its hosts (``SAVED_HOSTS``) replaced by this site's URL."""
        if not path.is_file():
            return self._status(404, b"not found")
        host, port = self.server.server_address[:2]
        text = path.read_text(encoding="utf-8")
        for saved_host, prefix in SAVED_HOSTS.items():
            text = text.replace(saved_host, f"http://{host}:{port}{prefix}")
        body = text.encode("utf-8")
        if gz:
            body, ctype = gzip.compress(body), "application/gzip"
        return self._status(200, body, ctype)

    def _archive_org(self, path: str, query: dict):
        """advancedsearch.php, metadata/<id>, download/<id>/<file>: see the module docstring."""
        if path == "/advancedsearch.php":
            if not query.get("q") or query.get("output") != ["json"]:
                return self._status(400, b"q and output=json are required")
            page = query.get("page", ["1"])[0]
            case = ARCHIVE_ORG / f"search_page{page}" / "input.json"
            if not page.isdigit() or not case.is_file():  # past the last page: no docs
                empty = {"responseHeader": {"status": 0}, "response": {"numFound": 0, "start": 0, "docs": []}}
                return self._status(200, json.dumps(empty).encode(), "application/json")
            return self._saved(case, "application/json")
        if m := re.fullmatch(r"/metadata/([A-Za-z0-9._-]+)", path):
            case = ARCHIVE_ORG / m.group(1) / "input.json"
            if not case.is_file():
                return self._status(200, b"{}", "application/json")
            return self._saved(case, "application/json")
        if (m := re.fullmatch(r"/download/([A-Za-z0-9._-]+)/(.+)", path)) and (clip := clip_named(m.group(2))):
            return self._status(302, headers={"Location": f"/media/{clip}.mp4"})
        return self._status(404, b"not found")

    def _commons(self, query: dict):
        """The saved category pages in order: the next one for the ``gcmcontinue`` of the last."""
        if query.get("action") != ["query"] or query.get("format") != ["json"]:
            return self._status(400, b'{"error": {"code": "badparams"}}', "application/json")
        token = query.get("gcmcontinue", [None])[0]
        for case in sorted(COMMONS.glob("category_page*/input.json")):
            if token is None:
                return self._saved(case, "application/json")
            if json.loads(case.read_text()).get("continue", {}).get("gcmcontinue") == token:
                token = None  # serve the next one
        return self._status(200, b'{"batchcomplete": true}', "application/json")

    def _fail(self, name: str):
        clip = DATA / "gradio_b.mp4"
        if re.fullmatch(r"once-[a-z0-9-]+\.mp4", name):  # 503 the first time, the clip after (`retry`)
            failed = self.server.__dict__.setdefault("failed_once", set())
            if name not in failed:
                failed.add(name)
                return self._status(503, b"try again later")
            return self._file(clip, "video/mp4")
        if name == "404":
            return self._status(404, b"not found")
        if name == "500":
            return self._status(500, b"server error")
        if name == "wrong-type.mp4":
            return self._file(clip, "text/plain")
        if name == "html-as-video.mp4":
            body = b"<!doctype html><html><body><h1>Not a video</h1></body></html>\n" * 20
            return self._status(200, body, "video/mp4")
        if name == "zero.mp4":
            return self._status(200, b"", "video/mp4")
        if name == "corrupt.mp4":
            head = clip.read_bytes()[:4096]
            garbage = bytes((i * 97 + 13) % 256 for i in range(200_000))
            return self._status(200, head + garbage, "video/mp4")
        if name == "truncated.mp4":
            data = clip.read_bytes()
            self._video_headers(len(data))
            if not self._head:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
            self.close_connection = True
            return None
        if name == "huge.mp4":
            self._video_headers(HUGE_BYTES)
            if not self._head:  # a little, then hold on until the client gives up
                self.wfile.write(b"\0" * 65536)
                self._trickle(SLOW_SECONDS)
            self.close_connection = True
            return None
        if name == "endless.mp4":
            self._video_headers(None)
            self.close_connection = True
            if self._head:
                return None
            chunk = clip.read_bytes()[:65536]
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                self.wfile.write(chunk)
            return None
        if name == "slow.mp4":
            data = clip.read_bytes()
            self._video_headers(len(data))
            if not self._head:
                self._trickle(SLOW_SECONDS, data)
            self.close_connection = True
            return None
        return self._status(404, b"no such failure route")

    def _hostile(self, name: str, query: dict):
        """Servers that misbehave on purpose (see the module docstring)."""
        first = {k: v[0] for k, v in query.items()}
        if name == "redirect":
            hops = int(first.get("n", "1"))
            target = first.get("to", "/media/gradio_b.mp4")
            if hops > 1:
                target = f"/hostile/redirect?n={hops - 1}&to={quote(target, safe='')}"
            return self._status(302, b"", headers={"Location": target})
        if name == "redirect-loop":
            return self._status(302, b"", headers={"Location": "/hostile/redirect-loop-2"})
        if name == "redirect-loop-2":
            return self._status(301, b"", headers={"Location": "/hostile/redirect-loop"})
        if name in ("hls-ssrf.m3u8", "m3u8-as-mp4.mp4"):
            base = first.get("to", "http://127.0.0.1:9")
            lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
            for seg in sorted(p.name for p in hls_dir().glob("seg*.ts"))[:4]:
                lines += ["#EXTINF:1.0,", f"{base}/hls/bbb/{seg}"]
            body = ("\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n").encode()
            ctype = "video/mp4" if name.endswith(".mp4") else "application/vnd.apple.mpegurl"
            return self._status(200, body, ctype)
        if name == "gzip-bomb.mp4":  # ~1 MiB on the wire per GiB inflated, made as it is sent
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if not self._head:
                packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1024 * 1024)
                for _ in range(1024):
                    self.wfile.write(packer.compress(zeros))
                self.wfile.write(packer.flush())
            return None
        if name == "bad-gzip.mp4":
            return self._status(200, b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8, "video/mp4",
                                headers={"Content-Encoding": "gzip"})  # fmt: skip
        if name == "brotli.mp4":
            return self._status(200, bytes(range(256)) * 8, "video/mp4", headers={"Content-Encoding": "br"})
        if name == "chunked-truncated.mp4":
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"10000\r\n" + (DATA / "gradio_b.mp4").read_bytes()[:1000])
            self.close_connection = True
            return None
        if name == "bad-status":
            self.wfile.write(b"SPAM 200 nonsense\r\n\r\n" + b"x" * 1000)
            self.close_connection = True
            return None
        if name == "header-flood":
            self.send_response(200)
            for i in range(300):
                self.send_header(f"X-Flood-{i}", "x")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if name == "reset":
            self.close_connection = True
            return None
        if name.startswith("files/") and getattr(self.server, "files_dir", None):
            folder = Path(self.server.files_dir).resolve()
            raw = unquote_to_bytes(self.path.split("/files/", 1)[1].split("?")[0])  # any bytes
            target = folder / os.fsdecode(raw)
            if target.resolve().parent != folder:
                return self._status(404, b"not in the folder")
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            return self._file(target, ctype)
        return self._status(404, b"no such hostile route")

    def _video_headers(self, length: int | None) -> None:
        """A 200 video/mp4 head declaring ``length`` bytes (None: no length, close to end)."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        if length is None:
            self.send_header("Connection", "close")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _trickle(self, seconds: float, data: bytes = b"\0" * 1024):
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline and i < len(data):
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            i += 1
            time.sleep(SLOW_INTERVAL)

    def _gen(self, i: int, query: dict):
        n = int(query.get("n", [GEN_PAGES])[0])
        if i < 0 or i >= n:
            return self._status(404, b"no such page")
        suffix = f"?n={n}" if "n" in query else ""
        links = "".join(f'<li><a href="/gen/{j}.html{suffix}">page {j}</a></li>'
                        for j in range(3 * i + 1, min(3 * i + 4, n)))  # fmt: skip
        video = ""
        if GEN_VIDEO_EVERY and i % GEN_VIDEO_EVERY == 0 and CLIPS:
            clip = CLIPS[(i // GEN_VIDEO_EVERY) % len(CLIPS)]
            video = f'<video controls src="/media/{html.escape(clip)}.mp4"></video>'
        body = (f"<!doctype html><html><head><title>Generated page {i}</title></head><body>"
                f"<h1>Generated page {i}</h1>{video}<ul>{links}</ul></body></html>").encode()  # fmt: skip
        return self._status(200, body, "text/html; charset=utf-8")


class Site:
    """The site on a free port in a daemon thread: ``with Site() as base_url: ...``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, files_dir: Path | None = None):
        self.server = ThreadingHTTPServer((host, port), SiteHandler)
        self.server.daemon_threads = True
        self.server.files_dir = files_dir  # served as /hostile/files/<name>
        self.server.hits = self.hits = []  # every request's path, in order
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        self.thread.start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


try:
    import pytest

    @pytest.fixture(scope="session")
    def site():
        """Base URL of the local test site, for the whole session."""
        server = Site()
        yield server.start()
        server.stop()
        if _hls_dir is not None:
            shutil.rmtree(_hls_dir, ignore_errors=True)
except ImportError:  # standalone use without pytest
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    mimetypes.add_type("video/mp4", ".mp4")
    server = Site(args.host, args.port)
    print(f"serving {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()


if __name__ == "__main__":
    main()
