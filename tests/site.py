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

Fixture ``site`` (session scope) returns ``http://127.0.0.1:PORT``. Standalone:
``python -m tests.site --port 8000``.
"""

from __future__ import annotations

import argparse
import html
import mimetypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

DATA = Path(__file__).resolve().parent / "data"
SITE = DATA / "site"
SAVED_PAGES = DATA / "pages" / "web"  # crawler/extract.py's saved cases, also pages of the site
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
    """The saved case that ``/<name>.html`` serves, or None (then tests/data/site/ has it)."""
    m = re.fullmatch(r"/([a-z0-9-]+)\.html", path)
    if not m:
        return None
    page = SAVED_PAGES / m.group(1).replace("-", "_") / "input.html"
    return page if page.is_file() else None


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
        if saved := saved_page(path):
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

    def _fail(self, name: str):
        clip = DATA / "gradio_b.mp4"
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

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.server = ThreadingHTTPServer((host, port), SiteHandler)
        self.server.daemon_threads = True
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
